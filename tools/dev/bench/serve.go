package main

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
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
	trees  int
}

func init() {
	register(&benchmark{
		Name:    "serve",
		Summary: "ward-serve vs a bare net/http handler decoding the same JSON: max req/s, p50/p99 at half load, binary size",
		Flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&serveFlags.d, "d", 6*time.Second, "length of each measured run")
			fs.IntVar(&serveFlags.rounds, "rounds", 5, "rounds; each side's median is reported (the machine is shared, so one run can be unlucky)")
			fs.IntVar(&serveFlags.conns, "c", 16, "connections")
			fs.StringVar(&serveFlags.child, "child", "", "internal: run the bare handler")
			fs.StringVar(&serveFlags.listen, "listen", "", "internal: the bare handler's address")
			fs.IntVar(&serveFlags.trees, "trees", 0, "serve a gbdt of about this many trees (0: the ridge)")
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

	model, body, err := serveBenchModel(dir)
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
		pid       int
	}{
		{"bare net/http handler (the limit)", "http://" + bareAddr + "/v1/predict", bare.Process.Pid},
		{"ward-serve", "http://" + serverAddr + "/v1/predict", server.Process.Pid},
	}
	for _, s := range sides { // warm up
		if _, err := load.Wrk(ctx, s.url, body, 3*time.Second, 1, serveFlags.conns); err != nil {
			return err
		}
	}
	// Each round measures both sides back to back, so that what else runs
	// on the machine weighs on both alike; each figure is the median of
	// the rounds, and the ratio the median of the rounds' ratios.
	type measured struct {
		load.Result
		cpu time.Duration // the side's process CPU time per request
	}
	rounds := func(run func(url string) (load.Result, error)) ([][]measured, error) {
		out := make([][]measured, len(sides))
		for range serveFlags.rounds {
			for i, s := range sides {
				before, err := cpuTime(s.pid)
				if err != nil {
					return nil, err
				}
				r, err := run(s.url)
				if err != nil {
					return nil, err
				}
				after, err := cpuTime(s.pid)
				if err != nil {
					return nil, err
				}
				out[i] = append(out[i], measured{r, (after - before) / time.Duration(max(r.Requests, 1))})
			}
		}
		return out, nil
	}
	median := func(ms []measured, f func(measured) float64) float64 {
		xs := make([]float64, len(ms))
		for i, m := range ms {
			xs[i] = f(m)
		}
		slices.Sort(xs)
		return xs[len(xs)/2]
	}
	failed := func(ms []measured) (n int) {
		for _, m := range ms {
			n += m.Non2xx + m.Errors
		}
		return n
	}
	rate := func(m measured) float64 { return m.Rate() }
	p50 := func(m measured) float64 { return float64(m.P50) }
	p99 := func(m measured) float64 { return float64(m.P99) }
	cpu := func(m measured) float64 { return float64(m.cpu) }
	dur := func(f float64) time.Duration { return time.Duration(f).Round(time.Microsecond) }

	full, err := rounds(func(url string) (load.Result, error) {
		return load.Wrk(ctx, url, body, serveFlags.d, 1, serveFlags.conns)
	})
	if err != nil {
		return err
	}
	halfRate := median(full[1], rate) / 2
	before, err := scrape(serverAddr)
	if err != nil {
		return err
	}
	half, err := rounds(func(url string) (load.Result, error) {
		return load.FixedRate(ctx, url, body, halfRate, serveFlags.d, 4*serveFlags.conns)
	})
	if err != nil {
		return err
	}
	after, err := scrape(serverAddr)
	if err != nil {
		return err
	}
	own := handlingP99(before, after)

	tw := tabwriter.NewWriter(os.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "\tmax (wrk)\tp50\tp99\tCPU/request\tfailed\t| at %.0f req/s: p50\tp99\tfailed\n", halfRate)
	for i, s := range sides {
		fmt.Fprintf(tw, "%s\t%.0f req/s\t%s\t%s\t%s\t%d\t| %s\t%s\t%d\n", s.name, median(full[i], rate),
			dur(median(full[i], p50)), dur(median(full[i], p99)), dur(median(full[i], cpu)), failed(full[i]),
			dur(median(half[i], p50)), dur(median(half[i], p99)), failed(half[i]))
	}
	tw.Flush()
	ratios := make([]measured, serveFlags.rounds)
	for r := range ratios {
		ratios[r].cpu = time.Duration(1e6 * full[1][r].Rate() / full[0][r].Rate())
	}
	ratio := median(ratios, cpu) / 1e6
	serverP99 := dur(median(half[1], p99))
	// The ridge's target is the server's own; a forest of 500 trees must
	// keep it at 0.8x the limit (issue 16).
	target := 0.6
	if serveFlags.trees > 0 {
		target = 0.8
	}
	fmt.Printf("\nthroughput ratio ward-serve / bare: %.2fx (target >= %.2fx); rounds: ", ratio, target)
	for r := range ratios {
		fmt.Printf("%.2f ", float64(ratios[r].cpu)/1e6)
	}
	fmt.Printf("\nCPU per request in the server process: bare %s, ward-serve %s (wrk's and the kernel's share of a request come on top, alike for both)\n",
		dur(median(full[0], cpu)), dur(median(full[1], cpu)))
	fmt.Printf("ward-serve p99 at half its max rate: %s (target < 5ms); its own handling time's p99 (its histogram): at most %s\n", serverP99, own)
	fmt.Printf("ward-serve binary (CGO_ENABLED=0 -trimpath -s -w): %s (target < 25 MiB)\n", mib(st.Size()))
	fmt.Printf("ward-serve memory after the runs: RSS %s, Go heap in use %s\n", mib(int64(after["process_resident_memory_bytes"])), mib(int64(after["go_memstats_heap_inuse_bytes"])))
	if ratio < target || serverP99 >= 5*time.Millisecond || st.Size() >= 25<<20 || failed(full[1])+failed(half[1]) > 0 {
		return errors.New("a target was missed")
	}
	return nil
}

// serveBenchModel fits the fit benchmark's synthetic model (8 categorical and
// 4 numeric features) and returns its artifact file and one case as JSON.
func serveBenchModel(dir string) (string, []byte, error) {
	spec := fitSpec()
	if serveFlags.trees > 0 {
		// A small learning rate keeps early stopping from cutting the
		// trees short; the refit scales them by the cases (5/4).
		spec.Family = models.FamilyGBDT
		spec.GBDT = models.GBDT{LearningRates: []float64{0.01}, MaxTrees: serveFlags.trees * 4 / 5, EarlyStop: serveFlags.trees}
	}
	a, err := models.Fit(spec, fitCases(20_000, 1), fitCases(5_000, 2))
	if err != nil {
		return "", nil, err
	}
	if a.Forest != nil {
		fmt.Printf("model: gbdt, %d trees\n", len(a.Forest.Trees))
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

// cpuTime returns the user and system CPU time a process has used.
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// After the command name in parentheses: state is the first field,
	// utime and stime the 12th and 13th, in clock ticks of 1/100 s.
	f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// scrape reads the server's /metrics: each sample by its name and labels.
func scrape(addr string) (map[string]float64, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		f, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = f
	}
	return out, sc.Err()
}

// handlingP99 is the upper bound of the latency bucket that holds the
// 99th percentile of /v1/predict between two scrapes.
func handlingP99(before, after map[string]float64) string {
	const bucket = `ward_serve_request_duration_seconds_bucket{route="/v1/predict",le="`
	type b struct{ le, n float64 }
	var bs []b
	for k, v := range after {
		if le, ok := strings.CutPrefix(k, bucket); ok {
			le = strings.TrimSuffix(le, `"}`)
			f, err := strconv.ParseFloat(le, 64)
			if err != nil { // +Inf
				f = math.Inf(1)
			}
			bs = append(bs, b{f, v - before[k]})
		}
	}
	slices.SortFunc(bs, func(x, y b) int { return cmp.Compare(x.le, y.le) })
	if len(bs) == 0 || bs[len(bs)-1].n == 0 {
		return "unknown"
	}
	for _, x := range bs {
		if x.n >= 0.99*bs[len(bs)-1].n {
			return time.Duration(x.le * float64(time.Second)).String()
		}
	}
	return "unknown"
}
