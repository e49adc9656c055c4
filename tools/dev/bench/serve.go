package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/wardml/ward/models"
	"github.com/wardml/ward/serving/load"
)

// serve: the model server (the static ward-serve binary, as images carry
// it) against the limit, a bare net/http handler that decodes the same
// JSON and answers a constant, each in a child process on loopback, driven
// by the same load: wrk at full speed for throughput, then a fixed-rate
// generator at half the server's maximum for latency.

var serveFlags struct {
	d      time.Duration
	rounds int
	conns  int
	child  string
	listen string
}

func init() {
	register(&benchmark{
		Name:    "serve",
		Summary: "ward-serve vs a bare net/http handler decoding the same JSON: max req/s, p50/p99 at half load, binary size",
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&serveFlags.d, "d", 10*time.Second, "length of each measured run")
			fs.IntVar(&serveFlags.rounds, "rounds", 3, "rounds; each side's median is reported (the machine is shared, so one run can be unlucky)")
			fs.IntVar(&serveFlags.conns, "c", 16, "connections")
			fs.StringVar(&serveFlags.child, "child", "", "internal: run the bare handler")
			fs.StringVar(&serveFlags.listen, "listen", "", "internal: the bare handler's address")
		},
		Run: runServe,
	})
}

func runServe(ctx context.Context) error {
	if serveFlags.child == "bare" {
		return serveBare(ctx, serveFlags.listen)
	}
	if _, err := exec.LookPath("wrk"); err != nil {
		return errors.New("wrk not found: install the Debian package wrk")
	}
	dir, err := os.MkdirTemp("", "ward-bench-serve-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	bin := filepath.Join(dir, "ward-serve")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, "./serving/cmd/ward-serve")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ward-serve: %v\n%s", err, out)
	}
	st, err := os.Stat(bin)
	if err != nil {
		return err
	}

	model, body, err := benchModel(dir)
	if err != nil {
		return err
	}
	serverAddr, bareAddr := freeAddr(), freeAddr()
	predLog, err := os.Create(filepath.Join(dir, "predictions.jsonl"))
	if err != nil {
		return err
	}
	defer predLog.Close()
	server := exec.Command(bin, "--model", model, "--listen", serverAddr, "--log-format", "json")
	server.Stdout = predLog // the prediction log goes to a file, as a container runtime keeps it
	self, err := os.Executable()
	if err != nil {
		return err
	}
	bare := exec.Command(self, "serve", "-child", "bare", "-listen", bareAddr)
	for _, c := range []*exec.Cmd{server, bare} {
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := c.Start(); err != nil {
			return err
		}
		defer func() { c.Process.Signal(syscall.SIGTERM); c.Wait() }()
	}
	for _, addr := range []string{serverAddr, bareAddr} {
		if err := waitHTTP(ctx, "http://"+addr+"/v1/predict", body); err != nil {
			return err
		}
	}
	fmt.Printf("serve: %d-core machine, GOMAXPROCS %d; one case of %d bytes; wrk -t1 -c%d; %d rounds of %s per side, alternating; medians\n\n",
		runtime.NumCPU(), runtime.GOMAXPROCS(0), len(body), serveFlags.conns, serveFlags.rounds, serveFlags.d)

	sides := []struct {
		name, url string
	}{{"bare net/http handler (the limit)", "http://" + bareAddr + "/v1/predict"}, {"ward-serve", "http://" + serverAddr + "/v1/predict"}}
	for _, s := range sides { // warm up
		if _, err := load.Wrk(ctx, s.url, body, 3*time.Second, 1, serveFlags.conns); err != nil {
			return err
		}
	}
	// Each round measures both sides back to back, so that what else runs
	// on the machine weighs on both alike.
	rounds := func(run func(url string) (load.Result, error)) ([]load.Result, error) {
		out := make([][]load.Result, len(sides))
		for range serveFlags.rounds {
			for i, s := range sides {
				r, err := run(s.url)
				if err != nil {
					return nil, err
				}
				out[i] = append(out[i], r)
			}
		}
		med := make([]load.Result, len(sides))
		for i := range sides {
			slices.SortFunc(out[i], func(a, b load.Result) int { return cmp.Compare(a.Rate(), b.Rate()) })
			med[i] = out[i][len(out[i])/2]
			p99 := make([]time.Duration, len(out[i]))
			for j, r := range out[i] {
				p99[j] = r.P99
			}
			slices.Sort(p99)
			med[i].P99 = p99[len(p99)/2]
		}
		return med, nil
	}
	full, err := rounds(func(url string) (load.Result, error) {
		return load.Wrk(ctx, url, body, serveFlags.d, 1, serveFlags.conns)
	})
	if err != nil {
		return err
	}
	rate := full[1].Rate() / 2
	half, err := rounds(func(url string) (load.Result, error) {
		return load.FixedRate(ctx, url, body, rate, serveFlags.d, 4*serveFlags.conns)
	})
	if err != nil {
		return err
	}
	rss, heap, err := serverMemory(serverAddr)
	if err != nil {
		return err
	}

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\tmax throughput (wrk)\tp50\tp99\tfailed\t| at %.0f req/s: p50\tp99\tfailed\n", rate)
	for i, s := range sides {
		fmt.Fprintf(tw, "%s\t%.0f req/s\t%s\t%s\t%d\t| %s\t%s\t%d\n", s.name, full[i].Rate(), full[i].P50, full[i].P99,
			full[i].Non2xx+full[i].Errors, half[i].P50, half[i].P99, half[i].Non2xx+half[i].Errors)
	}
	tw.Flush()
	ratio := full[1].Rate() / full[0].Rate()
	fmt.Printf("\nthroughput ratio ward-serve / bare: %.2fx (target >= 0.60x)\n", ratio)
	fmt.Printf("ward-serve p99 at half its max rate: %s (target < 5ms)\n", half[1].P99)
	fmt.Printf("ward-serve binary (CGO_ENABLED=0 -trimpath -s -w): %s (target < 25 MiB)\n", mib(st.Size()))
	fmt.Printf("ward-serve memory after the runs: RSS %s, Go heap in use %s\n", mib(rss), mib(heap))
	if ratio < 0.6 || half[1].P99 >= 5*time.Millisecond || st.Size() >= 25<<20 {
		return errors.New("a target was missed")
	}
	return nil
}

// benchModel fits the fit benchmark's synthetic model (8 categorical and
// 4 numeric features) and returns its artifact file and one case as JSON.
func benchModel(dir string) (string, []byte, error) {
	spec := fitSpec()
	a, err := models.Fit(spec, fitCases(20_000, 1), fitCases(5_000, 2))
	if err != nil {
		return "", nil, err
	}
	data, err := a.Encode()
	if err != nil {
		return "", nil, err
	}
	path := filepath.Join(dir, "model.json")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", nil, err
	}
	fields := map[string]any{}
	for c := range fitCases(1, 3) {
		for i, in := range spec.Inputs {
			if in.Type == models.String {
				fields[in.Name] = c.Row[i].Str
			} else {
				fields[in.Name] = c.Row[i].Num
			}
		}
	}
	body, err := json.Marshal(fields)
	return path, body, err
}

// serveBare is the limit: the same JSON decoded, a constant answered.
func serveBare(ctx context.Context, addr string) error {
	answer := []byte(`{"prediction":1234.5,"hospital":"bench","model_version":"constant","request_id":"r"}` + "\n")
	srv := &http.Server{Addr: addr, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dec := json.NewDecoder(r.Body)
		dec.UseNumber()
		var v any
		if err := dec.Decode(&v); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(answer)
	})}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitHTTP waits until url answers a POST of body with 200.
func waitHTTP(ctx context.Context, url string, body []byte) error {
	var last error
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		resp, err := http.Post(url, "application/json", strings.NewReader(string(body)))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		last = err
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("%s: %v", url, last)
}

// serverMemory reads the server's resident memory and Go heap in use from
// its own /metrics.
func serverMemory(addr string) (rss, heap int64, err error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, _ := strings.Cut(sc.Text(), " ")
		f, _ := strconv.ParseFloat(value, 64)
		switch name {
		case "process_resident_memory_bytes":
			rss = int64(f)
		case "go_memstats_heap_inuse_bytes":
			heap = int64(f)
		}
	}
	return rss, heap, sc.Err()
}
