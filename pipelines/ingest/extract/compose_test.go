package extract_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/sftpd/sftptest"
	"github.com/wardml/ward/models"
	"github.com/wardml/ward/pipelines/ingest/decrypt"
	"github.com/wardml/ward/pipelines/ingest/extract"
	"github.com/wardml/ward/pipelines/ingest/fetch"
	"github.com/wardml/ward/pipelines/ingest/staging"
)

// The stages composed as the ingest pipeline composes them: a hospital
// drops an age-encrypted extract with one bad row on the SFTP server; ward
// lists and fetches it into staging, decrypts the staged file as a stream,
// validates it, "loads" the good rows in a transaction that commits only
// on a clean end, and writes the report and the sealed rejected rows.
func TestStagesCompose(t *testing.T) {
	dir := t.TempDir()
	h, err := contract.Load("../../../internal/contract/testdata/st-olaf/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	h.Inbound.Encryption = decrypt.Age

	// The ingest key, and the hospital's drop.
	id, _ := age.GenerateX25519Identity()
	idFile := filepath.Join(dir, "ingest.age")
	os.WriteFile(idFile, []byte(id.String()+"\n"), 0o600)
	var plain bytes.Buffer
	plain.WriteString("case_id,patient_id,doctor_id,admitted_at,admission_type,ward_class,age,planned_los,comorbidities,status,total_bill\r\n")
	for i := 1; i <= 100; i++ {
		date := fmt.Sprintf("2026-11-%02d", 1+i%28)
		if i == 37 {
			date = "2026-11-31"
		}
		fmt.Fprintf(&plain, "C%04d,P%06d,D01,%s,elective,A,%d,3,1,completed,%d.50\r\n", i, i, date, 20+i%60, 1000+i)
	}
	root := filepath.Join(dir, "sftp")
	inbound := filepath.Join(root, "st-olaf", "inbound")
	os.MkdirAll(inbound, 0o755)
	var enc bytes.Buffer
	w, _ := age.Encrypt(&enc, id.Recipient())
	w.Write(plain.Bytes())
	w.Close()
	name := "cases_2026-11.csv.age"
	os.WriteFile(filepath.Join(inbound, name), enc.Bytes(), 0o644)
	os.WriteFile(filepath.Join(inbound, name+".done"), nil, 0o644)

	// The drop box: ward's in-process server.
	srv := sftptest.Start(t, root)

	ctx := context.Background()
	src, err := fetch.Dial(ctx, fetch.SFTPConfig{URL: srv.URL, Key: srv.Key, KnownHosts: srv.KnownHosts})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	listing, err := fetch.List(ctx, src, h)
	if err != nil || len(listing.Ready) != 1 {
		t.Fatalf("listing %+v, %v", listing, err)
	}
	st, err := staging.Open(filepath.Join(dir, "staging"))
	if err != nil {
		t.Fatal(err)
	}
	got := fetch.Fetch(ctx, src, st, h, listing.Ready)
	if got[0].Err != nil {
		t.Fatal(got[0].Err)
	}
	entry := got[0].Entry

	keys, err := decrypt.Load(decrypt.WithAgeIdentity(idFile))
	if err != nil {
		t.Fatal(err)
	}
	f, err := st.Open(entry.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := keys.Open(f, h, entry.Name)
	if err != nil {
		t.Fatal(err)
	}
	reports, err := st.ReportDir(h.ID)
	if err != nil {
		t.Fatal(err)
	}
	rejects := extract.NewRejectsFile(filepath.Join(reports, entry.Name+".rejected.csv"+decrypt.Suffix(h.Inbound.Encryption)),
		func(w io.Writer) (io.WriteCloser, error) { return keys.Seal(w, h.Inbound.Encryption) })
	x := extract.New(pr, h, h.Table(entry.Table), entry.Name, extract.WithRejects(rejects), extract.WithPreviousRows(90))

	// The loader: one transaction, committed only on a clean end.
	var tx, committed [][]models.Value
	var loadErr error
	for row, err := range x.Rows() {
		if err != nil {
			loadErr = err
			break
		}
		tx = append(tx, row)
	}
	if loadErr == nil {
		committed = tx
	}

	rep := x.Report()
	rep.SHA256 = entry.SHA256
	if rep.Rejects, err = rejects.Finish(); err != nil {
		t.Fatal(err)
	}
	jsonFile, textFile, err := rep.Write(reports)
	if err != nil {
		t.Fatal(err)
	}
	if loadErr != nil || len(committed) != 99 || rep.Verdict != extract.Partial {
		t.Fatalf("loaded %d rows, error %v, verdict %s", len(committed), loadErr, rep.Verdict)
	}
	if committed[0][10].Num != 1001.5 {
		t.Fatalf("total_bill of C0001 = %v", committed[0][10])
	}
	// The report names the row, column and rule; the value (patient
	// data) is only in the encrypted rejected-rows file.
	text, _ := os.ReadFile(textFile)
	if !strings.Contains(string(text), `row 37: admitted_at: not a date (want YYYY-MM-DD)`) || !strings.Contains(string(text), "rejected  "+rep.Rejects) {
		t.Fatalf("report:\n%s", text)
	}
	js, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	if v := "2026-11-31"; strings.Contains(string(text), v) || strings.Contains(string(js), v) {
		t.Fatalf("a report quotes the value %s:\n%s\n%s", v, text, js)
	}
	// The rejected row is on disk only encrypted, and the ingest key reads it.
	sealed, _ := os.ReadFile(rep.Rejects)
	if bytes.Contains(sealed, []byte("C0037")) {
		t.Fatal("rejected row in plaintext on disk")
	}
	back, err := keys.Open(bytes.NewReader(sealed), h, "r.csv.age")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(back)
	if !strings.Contains(string(b), "C0037,P000037,D01,2026-11-31") {
		t.Fatalf("rejects: %s", b)
	}
}
