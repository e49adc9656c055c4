package extract_test

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/extract"
)

// FuzzDecryptAndParse feeds bytes to the path a staged extract takes:
// decrypt (OpenPGP and age, binary or armored, with the test keys in
// testdata, which the seeds are encrypted to), then parse and validate as
// CSV. Whatever the bytes, decryption fails with a *decrypt.Error or gives
// a plaintext that the extractor reads to a verdict, within the limits.
func FuzzDecryptAndParse(f *testing.F) {
	keys, err := decrypt.Load(decrypt.WithPGPKey("testdata/fuzz-ingest.pgp", ""), decrypt.WithAgeIdentity("testdata/fuzz-ingest.age"))
	if err != nil {
		f.Fatal(err)
	}
	h, err := contract.Load("../../../internal/contract/testdata/st-olaf/hospital.yaml")
	if err != nil {
		f.Fatal(err)
	}
	h.Inbound.Limits = contract.Limits{MaxPlaintextBytes: 1 << 20, MaxCellBytes: 4 << 10, MaxPageBytes: 1 << 20}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, kind := range []string{decrypt.OpenPGP, decrypt.Age} {
			hk := *h
			hk.Inbound.Encryption = kind
			name := "cases_2026-11.csv" + decrypt.Suffix(kind)
			plain, err := keys.Open(bytes.NewReader(data), &hk, name)
			if err != nil {
				var de *decrypt.Error
				if !errors.As(err, &de) {
					t.Fatalf("%s: %v (%T), want a *decrypt.Error", kind, err, err)
				}
				continue
			}
			x := extract.New(plain, &hk, hk.Table("cases"), name, extract.WithRejects(io.Discard), extract.WithMaxLineBytes(64<<10))
			for _, err := range x.Rows() {
				if err != nil {
					var q *extract.QuarantineError
					if !errors.As(err, &q) {
						t.Fatalf("%s: %v (%T), want a quarantine", kind, err, err)
					}
				}
			}
		}
	})
}
