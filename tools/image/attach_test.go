package image

import (
	"context"
	"fmt"
	"sync"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
)

// Attachments pushed at once to one subject are all listed afterwards, on
// the referrers API and on the fallback index (where oras-go merges the
// concurrent updates of one repository; read-modify-write of the index by
// each push would keep only some), and pushing one again adds nothing.
func TestConcurrentAttachmentsKept(t *testing.T) {
	eachRegistry(t, func(t *testing.T, tg target) {
		ctx := context.Background()
		img, err := random.Image(256, 1)
		if err != nil {
			t.Fatal(err)
		}
		repo := tg.repo(t, "ward/attached")
		d, _ := img.Digest()
		subject := repo.Digest(d.String())
		if err := remote.Write(subject, img, tg.remote()...); err != nil {
			t.Fatal(err)
		}
		desc, err := descriptorOf(img)
		if err != nil {
			t.Fatal(err)
		}
		oras, err := NewPublisher(WithRegistry(tg.client)).orasRepository(repo)
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		arts := make([]artifact, n)
		for i := range arts {
			arts[i] = artifact{
				artifactType: ReportArtifactType, subject: desc,
				config:    static.NewLayer([]byte("{}"), emptyConfigType),
				layers:    []v1.Layer{static.NewLayer(fmt.Appendf(nil, "report %d", i), "text/plain")},
				layerAnns: []map[string]string{{AnnotationTitle: fmt.Sprintf("r%d.txt", i)}},
			}
		}
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range arts {
			wg.Go(func() { _, errs[i] = attach(ctx, oras, arts[i]) })
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("attach %d: %v", i, err)
			}
		}
		if _, err := attach(ctx, oras, arts[0]); err != nil {
			t.Fatal(err)
		}
		refs, err := Referrers(ctx, subject, "", tg.remote()...)
		if err != nil {
			t.Fatal(err)
		}
		if len(refs) != n {
			t.Errorf("%d attached at once, %d listed: %+v", n, len(refs), refs)
		}
	})
}
