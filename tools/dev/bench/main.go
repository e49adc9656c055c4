// Command bench runs ward's benchmarks, each against a reference measured
// in the same run, and prints the figures side by side with their ratio:
//
//	go run ./tools/dev/bench            # list the benchmarks
//	go run ./tools/dev/bench NAME ...   # run some
//
// Speed and memory targets live here, never in timed unit tests: the
// machines are shared and noisy, so only ratios measured in one run mean
// anything. Each benchmark registers itself in init, one file each.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"sort"
)

// benchmark is one `bench NAME`.
type benchmark struct {
	Name    string
	Summary string
	// Flags registers the benchmark's own flags.
	Flags func(fs *flag.FlagSet)
	Run   func(ctx context.Context) error
}

var benchmarks = map[string]*benchmark{}

func register(b *benchmark) { benchmarks[b.Name] = b }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if len(os.Args) < 2 {
		names := make([]string, 0, len(benchmarks))
		for n := range benchmarks {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Println("usage: go run ./tools/dev/bench NAME [flags]")
		for _, n := range names {
			fmt.Printf("  %-10s %s\n", n, benchmarks[n].Summary)
		}
		return
	}
	b, ok := benchmarks[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "bench: unknown benchmark %q\n", os.Args[1])
		os.Exit(2)
	}
	fs := flag.NewFlagSet(b.Name, flag.ExitOnError)
	if b.Flags != nil {
		b.Flags(fs)
	}
	// A benchmark whose work runs in a child process has its own.
	profile := new(string)
	if fs.Lookup("cpuprofile") == nil {
		fs.StringVar(profile, "cpuprofile", "", "write a CPU profile of this process (not of the reference tools) to `FILE`")
	}
	_ = fs.Parse(os.Args[2:])
	if *profile != "" {
		f, err := os.Create(*profile)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(2)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if err := b.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "bench %s: %v\n", b.Name, err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}
