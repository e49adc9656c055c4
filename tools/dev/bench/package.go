package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"time"

	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

func init() {
	var (
		hospitals int
		host      string
		serverPkg string
	)
	register(&benchmark{
		Name:    "package",
		Summary: "package and push 20 hospitals' images twice: bytes uploaded, time, and a second run that uploads nothing",
		Flags: func(fs *flag.FlagSet) {
			fs.IntVar(&hospitals, "hospitals", 20, "number of hospitals")
			fs.StringVar(&host, "registry", "", "registry host[:port] to push to (default: the in-process registry)")
			fs.StringVar(&serverPkg, "server-package", "", "server main package (default ./serving/cmd/ward-serve)")
		},
		Run: func(ctx context.Context) error {
			if host == "" {
				dir, err := os.MkdirTemp("", "ward-bench-registry-")
				if err != nil {
					return err
				}
				defer os.RemoveAll(dir)
				srv, err := registry.Start(dir)
				if err != nil {
					return err
				}
				defer srv.Close()
				host = srv.Host
			}
			if serverPkg == "" {
				serverPkg = image.DefaultServerPackage
			}
			t0 := time.Now()
			srv, err := image.BuildServer(ctx, ".", serverPkg, image.Platforms)
			if err != nil {
				return err
			}
			fmt.Printf("server %s built for %v in %s\n", serverPkg, image.Platforms, time.Since(t0).Round(time.Millisecond))
			key, err := signing.Generate()
			if err != nil {
				return err
			}
			meter := registry.NewMeter(nil)
			client := registry.NewClient(registry.WithTransport(meter))

			type run struct {
				sent    registry.Sent
				took    time.Duration
				digests []string
				naive   int64
			}
			once := func() (run, error) {
				meter.Reset()
				var r run
				created := image.Created(time.Unix(1764504000, 0))
				pub := image.NewPublisher(image.WithRegistry(client), image.WithSigner(key), image.WithServer(srv), image.WithBuild(created))
				start := time.Now()
				for i := range hospitals {
					m := benchModel(i)
					repo, err := client.Repository(host, "ward/"+m.Hospital)
					if err != nil {
						return r, err
					}
					res, err := image.Package(ctx, &image.Trained{Model: m, Report: image.Report{"metrics.json": m.Artifact[:256]}}, repo, pub)
					if err != nil {
						return r, err
					}
					r.digests = append(r.digests, res.Ref.DigestStr())
					// The same build, pure, for what pushing it alone would send.
					img, err := image.Build(m, srv, created)
					if err != nil {
						return r, err
					}
					r.naive += imageBytes(img)
				}
				r.took = time.Since(start)
				r.sent = meter.Sent()
				return r, nil
			}
			first, err := once()
			if err != nil {
				return err
			}
			second, err := once()
			if err != nil {
				return err
			}
			same := 0
			for i := range first.digests {
				if first.digests[i] == second.digests[i] {
					same++
				}
			}
			var binary int64
			for _, b := range srv.Binaries {
				binary += int64(len(b))
			}
			fmt.Printf("registry %s, %d hospitals, server binaries %s (both platforms, before gzip)\n\n", host, hospitals, mib(binary))
			fmt.Printf("%-28s %14s %14s\n", "", "first run", "second run")
			fmt.Printf("%-28s %14d %14d\n", "blobs uploaded", first.sent.Blobs, second.sent.Blobs)
			fmt.Printf("%-28s %14s %14s\n", "bytes uploaded", mib(first.sent.Bytes), mib(second.sent.Bytes))
			fmt.Printf("%-28s %14d %14d\n", "blobs mounted", first.sent.Mounted, second.sent.Mounted)
			fmt.Printf("%-28s %14s %14s\n", "time", first.took.Round(time.Millisecond), second.took.Round(time.Millisecond))
			fmt.Printf("%-28s %14s %14s\n", "each image alone, in full", mib(first.naive), mib(second.naive))
			fmt.Printf("\nfirst run uploaded %.3f of the images' bytes (the server layers went once); second run: %d blobs, %d of %d digests identical\n",
				float64(first.sent.Bytes)/float64(first.naive), second.sent.Blobs, same, hospitals)
			if second.sent.Blobs != 0 || same != hospitals {
				return fmt.Errorf("target missed: the second run uploaded %d blobs and kept %d of %d digests", second.sent.Blobs, same, hospitals)
			}
			return nil
		},
	})
}

// benchModel is hospital i's model: an artifact of about 100 KiB, the size
// of a ridge model with a few hundred one-hot columns and its summaries.
func benchModel(i int) image.Model {
	rng := rand.New(rand.NewPCG(uint64(i), 7))
	coef := make([]map[string]any, 2000)
	for j := range coef {
		coef[j] = map[string]any{"name": fmt.Sprintf("feature_%d", j), "value": rng.NormFloat64()}
	}
	h := fmt.Sprintf("hospital-%02d", i)
	metrics := map[string]float64{"mae": 500 + 100*rng.Float64(), "rmse": 900 + 200*rng.Float64(), "under_rate": 0.2}
	art, _ := json.Marshal(map[string]any{"format_version": 1, "hospital": h, "version": "2026-11-30.1", "family": "ridge",
		"intercept": 8.1, "coefficients": coef, "metrics": map[string]any{"validation": metrics}})
	return image.Model{Hospital: h, Version: "2026-11-30.1", Family: "ridge", Metrics: metrics, Artifact: art}
}

// imageBytes is what pushing img alone to an empty registry sends: each
// distinct layer and config of its platforms once.
func imageBytes(img *image.Image) int64 {
	sizes := map[string]int64{}
	for _, pi := range img.Platforms {
		m, err := pi.Manifest()
		if err != nil {
			continue
		}
		sizes[m.Config.Digest.String()] = m.Config.Size
		for _, l := range m.Layers {
			sizes[l.Digest.String()] = l.Size
		}
	}
	var n int64
	for _, s := range sizes {
		n += s
	}
	return n
}
