// Command ward-serve is the model server in every image: a static binary
// (CGO_ENABLED=0) that serves the model at --model (WARD_MODEL, default
// /models/model.json) on --listen (PORT, default :8080). It is the same
// server as `ward serve`; see package serving for the API and the
// prediction log. SIGHUP reloads the model, SIGTERM drains and stops.
//
// Exit codes: 0 stopped cleanly, 1 failed while serving, 2 bad flags or
// settings, or a model that cannot be loaded.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/logging"
	"github.com/wardml/ward/internal/version"
	"github.com/wardml/ward/serving"
)

func main() {
	fs := flag.NewFlagSet("ward-serve", flag.ContinueOnError)
	flags := serving.BindFlags(fs)
	logFormat := fs.String("log-format", "json", "json or text (env WARD_LOG_FORMAT)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error (env WARD_LOG_LEVEL)")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if err == flag.ErrHelp {
			os.Exit(exit.OK)
		}
		os.Exit(exit.Config)
	}
	if *showVersion {
		fmt.Println("ward-serve", version.Get())
		return
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, env := range map[string]string{"log-format": "WARD_LOG_FORMAT", "log-level": "WARD_LOG_LEVEL"} {
		if v := os.Getenv(env); v != "" && !set[name] {
			fs.Set(name, v)
		}
	}
	log := logging.New(os.Stderr, logging.Options{Format: *logFormat, Level: *logLevel, Service: serving.ServiceName})
	cfg, err := flags.Config(os.LookupEnv)
	if err != nil {
		log.Error("bad settings", "error", err)
		os.Exit(exit.Config)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serving.Run(ctx, cfg, serving.WithLogger(log)); err != nil {
		log.Error("ward-serve stopped", "error", err)
		stop()
		os.Exit(exit.Code(err))
	}
}
