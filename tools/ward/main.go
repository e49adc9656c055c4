// Command ward is the one CLI of the toolchain: `ward <command>`. It is thin:
// it parses flags and the environment, calls the packages that do the work,
// and maps their errors to the exit codes documented in README.md. Each
// command lives in its own cmd_*.go file and registers itself in init.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/wardml/ward/internal/config"
	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/logging"
)

// Command is one `ward <name>` command.
type Command struct {
	Name    string
	Summary string // one line, for `ward help`
	// Usage is the synopsis after "ward", e.g. "ingest [--hospital ID ...] [--all]".
	Usage string
	// Help is the longer description; Example is at least one command line.
	Help    string
	Example string
	// Output offers --output text|json.
	Output bool
	// New returns one command line of the command: a fresh value of its
	// flags (a struct of its own), so that no run sees another's.
	New func() Runner
}

// Runner is one command line of a command.
type Runner interface {
	// Flags registers the command's own flags.
	Flags(fs *flag.FlagSet)
	// Run does the work; args are the positional arguments.
	Run(ctx context.Context, app *App, args []string) error
}

// noFlags is the Runner of a command without flags of its own.
type noFlags func(ctx context.Context, app *App, args []string) error

func (noFlags) Flags(*flag.FlagSet) {}
func (f noFlags) Run(ctx context.Context, app *App, args []string) error {
	return f(ctx, app, args)
}

var commands = map[string]*Command{}

// register adds a command; each cmd_*.go calls it from init.
func register(c *Command) {
	if _, dup := commands[c.Name]; dup {
		panic("ward: command registered twice: " + c.Name)
	}
	commands[c.Name] = c
}

// App is what a command runs with.
type App struct {
	Config *config.Config
	Log    *slog.Logger
	Stdout io.Writer
	Stderr io.Writer
	// Output is text or json.
	Output string
	// Environ is the environment the command runs with (os.Environ in
	// main; tests give their own), for variables that are not settings.
	Environ []string
}

// JSON reports whether the command should print JSON.
func (a *App) JSON() bool { return a.Output == "json" }

// Print writes v as indented JSON with --output json, else calls text.
func (a *App) Print(v any, text func(w io.Writer)) error {
	if a.JSON() {
		enc := json.NewEncoder(a.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	text(a.Stdout)
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	args := os.Args[1:]
	if filepath.Base(os.Args[0]) == "serve" {
		// Packed as an image's /ward/serve (ward demo outside a ward
		// checkout packs ward itself), ward is the model server.
		args = append([]string{"serve"}, args...)
	}
	code := run(ctx, args, os.Stdout, os.Stderr, os.Environ())
	stop()
	os.Exit(code)
}

// run is main without the process: tests call it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, environ []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		if len(args) > 1 {
			if c, ok := commands[args[1]]; ok {
				fs, _, _, _ := commandFlags(c)
				printCommandHelp(stdout, c, fs)
				return exit.OK
			}
		}
		printHelp(stdout)
		return exit.OK
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "ward: unknown command %q\n\n", args[0])
		printHelp(stderr)
		return exit.Config
	}
	fs, r, cfgFlags, output := commandFlags(c)
	positional, err := parseInterspersed(fs, args[1:])
	if errors.Is(err, flag.ErrHelp) {
		printCommandHelp(stdout, c, fs)
		return exit.OK
	}
	if err != nil {
		fmt.Fprintf(stderr, "ward %s: %v\nRun 'ward %s --help' for usage.\n", c.Name, config.Redact(err.Error()), c.Name)
		return exit.Config
	}
	cfg, err := config.Load(cfgFlags, environ)
	if err != nil {
		fmt.Fprintf(stderr, "ward %s: %v\n", c.Name, config.Redact(err.Error()))
		return exit.Config
	}
	app := &App{
		Config: cfg,
		Stdout: stdout,
		Stderr: stderr,
		Log:    logging.New(stderr, logging.Options{Format: cfg.Get("log_format"), Level: cfg.Get("log_level")}),
		Output: "text",
	}
	app.Environ = environ
	if output != nil {
		if *output != "text" && *output != "json" {
			fmt.Fprintf(stderr, "ward %s: --output %q: want text or json\n", c.Name, *output)
			return exit.Config
		}
		app.Output = *output
	}
	if err := r.Run(ctx, app, positional); err != nil {
		fmt.Fprintf(stderr, "ward %s: %v\n", c.Name, config.Redact(err.Error()))
		return exit.Code(err)
	}
	return exit.OK
}

// commandFlags builds a command's flag set: its own flags first (they win
// over a global flag of the same name), then --output, then the global
// settings.
func commandFlags(c *Command) (*flag.FlagSet, Runner, *config.Flags, *string) {
	fs := flag.NewFlagSet("ward "+c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	r := c.New()
	r.Flags(fs)
	var output *string
	if c.Output {
		output = fs.String("output", "text", "text or json")
	}
	return fs, r, config.BindFlags(fs), output
}

// parseInterspersed lets flags follow positional arguments
// (`ward verify REF --key PUB`), as users expect.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func printHelp(w io.Writer) {
	fmt.Fprintln(w, "ward: a GitOps, model-as-artifact CI toolchain for a hospital group's ML models.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: ward <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].Summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'ward <command> --help' for a command's flags and an example.")
	fmt.Fprintln(w, "Exit codes: 0 ok, 1 failure, 2 usage/config/connection, 3 gate failed, 4 model unhealthy.")
}

func printCommandHelp(w io.Writer, c *Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: ward %s\n\n%s\n", c.Usage, c.Summary)
	if c.Help != "" {
		fmt.Fprintf(w, "\n%s\n", strings.TrimSpace(c.Help))
	}
	if c.Example != "" {
		fmt.Fprintf(w, "\nExample:\n")
		for _, l := range strings.Split(strings.TrimSpace(c.Example), "\n") {
			fmt.Fprintf(w, "  %s\n", l)
		}
	}
	global := map[string]bool{"config": true}
	for _, s := range config.Settings {
		if s.Flag != "" {
			global[s.Flag] = true
		}
	}
	var own, shared []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) {
		if global[f.Name] {
			shared = append(shared, f)
		} else {
			own = append(own, f)
		}
	})
	printFlags := func(title string, fl []*flag.Flag) {
		if len(fl) == 0 {
			return
		}
		fmt.Fprintf(w, "\n%s:\n", title)
		for _, f := range fl {
			name, usage := flag.UnquoteUsage(f)
			line := "  --" + f.Name
			if name != "" {
				line += " " + name
			}
			def := ""
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				def = " (default " + f.DefValue + ")"
			}
			fmt.Fprintf(w, "%-28s %s%s\n", line, usage, def)
		}
	}
	printFlags("Flags", own)
	printFlags("Global flags (also set by WARD_* variables or ward.yaml)", shared)
}

// stringList is a repeatable flag (--hospital a --hospital b, or a,b).
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}
