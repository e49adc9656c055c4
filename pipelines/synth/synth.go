// Package synth makes a synthetic hospital group: per hospital, monthly
// extracts of patients, doctors and cases, encrypted as the hospital's
// contract says, in the SFTP drop-box layout that ward ingest reads, and
// the contracts themselves. No real patient data can ship, so this is the
// start of the loop in tests, the demo and CI (`ward synth`).
//
// The data is made so that the two findings that drive ward's training
// design show up in it. A case's bill is its hospital's price level x the
// specialty's base price x the hospital's own price of that specialty x
// its own ward-class premium (steep where it runs private wings, nearly
// flat elsewhere) x the doctor's fee level and grade x a persistent
// patient effect x the length of stay (almost in proportion at a hospital
// that bills by the night, hardly at one that bills by the case) x the
// hospital's own effects of comorbidities, age, emergency admission and
// insurance x its inflation and yearly tariff step x seasonality, with
// lognormal noise. These per-hospital effects are interactions that one
// pooled model with a hospital column cannot fit, so a model per hospital
// is clearly better. A share of the cases are returning patients who carry
// their effect with them, and prices drift, so a random split is more
// optimistic than a time split. The stay that is billed differs from the
// planned_los known at pre-admission. A shock (WithShocks) multiplies one
// hospital's bills from a month on, so that feedback has a degraded model
// to find.
//
// The same seed and options give byte-identical plaintext (CSV or Parquet)
// and contracts: every random draw comes from a seeded PCG stream of its
// hospital, never from the clock or map order. Encryption draws fresh
// randomness (age offers no other way), so encrypted files differ from run
// to run but decrypt to the same bytes.
//
// # Dirt
//
// At a low rate (WithDirt, default 0.002; 0 is clean), drawn per row or
// cell from a stream of its own so that the clean data stays the same:
//
//   - missing: an optional cell left empty (patients' sex, birth_date,
//     insurance; doctors' grade, for an ungraded doctor in every roster;
//     cases' age, planned_los, comorbidities).
//     Valid: ingest loads a null, training imputes.
//   - bad age: a case's age out of range (150, -1, 999, 200, -7). Ingest
//     rejects the row (min 0, max 110).
//   - bad date: a case's admitted_at or a patient's birth_date written
//     day-first (31/01/2025), without separators (20250131) or as a
//     timestamp (2025-01-31 09:00). Ingest rejects the row. CSV only: a
//     Parquet DATE column cannot hold one.
//   - duplicate: a case row sent twice in the same file, one copy right
//     after the other. Ingest rejects the second copy (the key is unique
//     within a file).
//   - correction: a case billed wrong (charges left out, or billed twice)
//     in its month's file, and re-sent with the right bill in
//     cases_YYYY-MM_correction.* of one of the next two months (YYYY-MM is
//     the month the correction is sent in). Ingest upserts it by case_id.
//
// At the default rate about 0.6% of a cases file's rows are rejected, far
// below a contract's max_rejected_rows (5%), so no file is quarantined.
package synth

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/internal/exit"
)

// Option changes a setting of Generate.
type Option func(*settings)

type settings struct {
	hospitals  int
	months     int
	start      time.Time
	seed       uint64
	format     string
	encryption string
	armor      bool
	sign       bool
	recipients []string
	dirt       float64
	shocks     []Shock
	force      bool
	shape      string
}

// The defaults of Generate (and of `ward synth`).
const (
	DefaultHospitals  = 5
	DefaultMonths     = 24
	DefaultStart      = "2024-01"
	DefaultSeed       = 1
	DefaultFormat     = "csv"
	DefaultEncryption = "mixed"
	DefaultDirt       = 0.002
)

// The shapes of the bill (WithShape).
const (
	// LogLinear: the log bill is linear in the case's features.
	LogLinear = "loglinear"
	// Nonlinear adds what a linear model cannot fit: a tariff that steps
	// with the planned stay, specialty x ward-class interactions, and a
	// severity cliff at five comorbidities.
	Nonlinear = "nonlinear"
)

// WithShape sets the shape of the bill: LogLinear (default) or Nonlinear.
func WithShape(shape string) Option { return func(s *settings) { s.shape = shape } }

// WithHospitals sets the size of the group (1 to MaxHospitals).
func WithHospitals(n int) Option { return func(s *settings) { s.hospitals = n } }

// WithMonths sets the number of months of extracts.
func WithMonths(n int) Option { return func(s *settings) { s.months = n } }

// WithStart sets the first month (see ParseMonth).
func WithStart(month time.Time) Option { return func(s *settings) { s.start = month } }

// WithSeed sets the seed every random draw derives from.
func WithSeed(seed uint64) Option { return func(s *settings) { s.seed = seed } }

// WithFormat sets the extracts' format: csv or parquet.
func WithFormat(format string) Option { return func(s *settings) { s.format = format } }

// WithEncryption sets the extracts' encryption: none, openpgp, age, or
// mixed (the hospitals alternate between openpgp and age).
func WithEncryption(mode string) Option { return func(s *settings) { s.encryption = mode } }

// WithArmor writes encrypted extracts ASCII-armored.
func WithArmor(on bool) Option { return func(s *settings) { s.armor = on } }

// WithSigning makes each OpenPGP hospital sign its extracts with a key of
// its own, whose public key goes beside its contract (inbound.signed_by).
func WithSigning(on bool) Option { return func(s *settings) { s.sign = on } }

// WithRecipients encrypts to the keys in these files (OpenPGP public keys
// or age recipients files) instead of generating ward's ingest keys.
func WithRecipients(files ...string) Option {
	return func(s *settings) { s.recipients = append(s.recipients, files...) }
}

// WithDirt sets the rate of each kind of dirt (0: clean).
func WithDirt(rate float64) Option { return func(s *settings) { s.dirt = rate } }

// WithShocks multiplies hospitals' bills from a month on.
func WithShocks(shocks ...Shock) Option {
	return func(s *settings) { s.shocks = append(s.shocks, shocks...) }
}

// WithForce replaces what an earlier run wrote in the output folder
// (hospitals/, sftp/, keys/, README.txt) instead of refusing a folder that
// is not empty.
func WithForce(on bool) Option { return func(s *settings) { s.force = on } }

// Shock multiplies one hospital's bills from a month on (feedback must
// flag that hospital, and only it).
type Shock struct {
	Hospital string    `json:"hospital"`
	From     time.Time `json:"from"`
	Factor   float64   `json:"factor"`
}

// ParseShock reads ID:YYYY-MM:FACTOR, e.g. st-olaf:2025-07:1.35.
func ParseShock(s string) (Shock, error) {
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return Shock{}, fmt.Errorf("shock %q: want HOSPITAL:YYYY-MM:FACTOR, e.g. st-olaf:2025-07:1.35", s)
	}
	from, err := ParseMonth(parts[1])
	if err != nil {
		return Shock{}, fmt.Errorf("shock %q: %w", s, err)
	}
	f, err := strconv.ParseFloat(parts[2], 64)
	if err != nil || !(f > 0) || f > 100 {
		return Shock{}, fmt.Errorf("shock %q: factor %q: want a number above 0, e.g. 1.35", s, parts[2])
	}
	return Shock{Hospital: parts[0], From: from, Factor: f}, nil
}

func (s Shock) String() string {
	return s.Hospital + ":" + s.From.Format("2006-01") + ":" + strconv.FormatFloat(s.Factor, 'g', -1, 64)
}

// ParseMonth reads YYYY-MM as the first day of that month, UTC.
func ParseMonth(s string) (time.Time, error) {
	t, err := time.Parse("2006-01", s)
	if err != nil {
		return time.Time{}, fmt.Errorf("month %q: want YYYY-MM", s)
	}
	return t, nil
}

// Summary says what Generate wrote.
type Summary struct {
	Out        string            `json:"out"`
	Command    string            `json:"command"`
	Seed       uint64            `json:"seed"`
	Start      string            `json:"start"`
	Months     int               `json:"months"`
	Format     string            `json:"format"`
	Encryption string            `json:"encryption"`
	Dirt       float64           `json:"dirt"`
	Shocks     []Shock           `json:"shocks,omitempty"`
	Hospitals  []HospitalSummary `json:"hospitals"`
	Keys       []Key             `json:"keys,omitempty"`
	// Files and Cases are the totals over the hospitals.
	Files int `json:"files"`
	Cases int `json:"cases"`
	// Contracts is the folder of the contracts (WARD_HOSPITALS); SFTP the
	// base path of the drop box.
	Contracts string `json:"contracts"`
	SFTP      string `json:"sftp"`
}

// HospitalSummary says what Generate wrote for one hospital.
type HospitalSummary struct {
	ID         string `json:"id"`
	Name       string `json:"name"`
	Encryption string `json:"encryption"`
	Contract   string `json:"contract"`
	Inbound    string `json:"inbound"`
	Files      int    `json:"files"`
	// Patients, Doctors and Cases count distinct records (rows re-sent,
	// duplicated or corrected count once).
	Patients int        `json:"patients"`
	Doctors  int        `json:"doctors"`
	Cases    int        `json:"cases"`
	Dirt     DirtCounts `json:"dirt"`
}

func (s *settings) check() error {
	switch {
	case s.hospitals < 1 || s.hospitals > MaxHospitals:
		return fmt.Errorf("hospitals %d: want 1 to %d", s.hospitals, MaxHospitals)
	case s.months < 1 || s.months > 600:
		return fmt.Errorf("months %d: want 1 to 600", s.months)
	case s.format != "csv" && s.format != "parquet":
		return fmt.Errorf("format %q: want csv or parquet", s.format)
	case !slices.Contains([]string{"none", "openpgp", "age", "mixed"}, s.encryption):
		return fmt.Errorf("encrypt %q: want none, openpgp, age or mixed", s.encryption)
	case s.shape != LogLinear && s.shape != Nonlinear:
		return fmt.Errorf("shape %q: want %s or %s", s.shape, LogLinear, Nonlinear)
	case !(s.dirt >= 0 && s.dirt <= 0.5):
		return fmt.Errorf("dirt %v: want a rate from 0 (clean) to 0.5", s.dirt)
	case s.sign && s.encryption != "openpgp" && s.encryption != "mixed":
		return fmt.Errorf("sign: extracts are signed with OpenPGP; use it with --encrypt openpgp or mixed, not %s", s.encryption)
	}
	last := s.start.AddDate(0, s.months-1, 0)
	for _, sh := range s.shocks {
		if !slices.Contains(ids(s.hospitals), sh.Hospital) {
			return fmt.Errorf("shock %s: no hospital %q in a group of %d (%s)", sh, sh.Hospital, s.hospitals, strings.Join(ids(s.hospitals), ", "))
		}
		if sh.From.Before(s.start) || sh.From.After(last) {
			return fmt.Errorf("shock %s: month %s is outside the months generated (%s to %s)", sh, sh.From.Format("2006-01"), s.start.Format("2006-01"), last.Format("2006-01"))
		}
	}
	return nil
}

func ids(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = hospitalID(i)
	}
	return out
}

// encryptionOf returns hospital n's encryption: in a mixed group the
// hospitals alternate, openpgp first.
func (s *settings) encryptionOf(n int) string {
	if s.encryption != "mixed" {
		return s.encryption
	}
	return []string{"openpgp", "age"}[n%2]
}

// command is the ward synth command line that gives the same data.
func (s *settings) command() string {
	args := []string{"ward synth --out DIR",
		"--hospitals " + strconv.Itoa(s.hospitals),
		"--months " + strconv.Itoa(s.months),
		"--start " + s.start.Format("2006-01"),
		"--seed " + strconv.FormatUint(s.seed, 10),
		"--format " + s.format,
		"--encrypt " + s.encryption,
		"--dirt " + strconv.FormatFloat(s.dirt, 'g', -1, 64)}
	if s.shape != LogLinear {
		args = append(args, "--shape "+s.shape)
	}
	if s.armor {
		args = append(args, "--armor")
	}
	if s.sign {
		args = append(args, "--sign")
	}
	for _, sh := range s.shocks {
		args = append(args, "--shock "+sh.String())
	}
	return strings.Join(args, " ")
}

// Generate writes a synthetic hospital group under out:
//
//	out/hospitals/<id>/hospital.yaml               the contracts (WARD_HOSPITALS)
//	out/sftp/<id>/inbound/<table>_YYYY-MM.csv.gpg   the drop box (its base path is out/sftp)
//	out/keys/                                      ward's ingest keys, when generated
//	out/README.txt                                 what was generated, and how to use it
//
// A bad option is an error with exit code 2 (usage).
func Generate(ctx context.Context, out string, opts ...Option) (*Summary, error) {
	start, _ := ParseMonth(DefaultStart)
	s := &settings{hospitals: DefaultHospitals, months: DefaultMonths, start: start, seed: DefaultSeed,
		format: DefaultFormat, encryption: DefaultEncryption, dirt: DefaultDirt, shape: LogLinear}
	for _, o := range opts {
		o(s)
	}
	s.start = time.Date(s.start.Year(), s.start.Month(), 1, 0, 0, 0, 0, time.UTC)
	if out == "" {
		return nil, exit.With(exit.Config, errors.New("no output folder (--out DIR)"))
	}
	if err := s.check(); err != nil {
		return nil, exit.With(exit.Config, err)
	}
	rc, err := readRecipients(s.recipients)
	if err != nil {
		return nil, exit.With(exit.Config, err)
	}
	if err := prepare(out, s.force); err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	sum := &Summary{Out: abs, Command: s.command(), Seed: s.seed, Start: s.start.Format("2006-01"), Months: s.months,
		Format: s.format, Encryption: s.encryption, Dirt: s.dirt, Shocks: s.shocks,
		Contracts: filepath.Join(abs, "hospitals"), SFTP: filepath.Join(abs, "sftp")}
	kinds := map[string]bool{}
	for n := range s.hospitals {
		kinds[s.encryptionOf(n)] = true
	}
	sum.Keys, err = rc.ensure(filepath.Join(abs, "keys"), kinds)
	if err != nil {
		return nil, fmt.Errorf("keys: %w", err)
	}
	for n := range s.hospitals {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hs, keys, err := s.hospital(ctx, abs, n, &rc)
		if err != nil {
			return nil, fmt.Errorf("synth %s: %w", hospitalID(n), err)
		}
		sum.Hospitals = append(sum.Hospitals, hs)
		sum.Keys = append(sum.Keys, keys...)
		sum.Files += hs.Files
		sum.Cases += hs.Cases
	}
	if err := os.WriteFile(filepath.Join(abs, "README.txt"), readme(s, sum), 0o644); err != nil {
		return nil, err
	}
	return sum, nil
}

// prepare makes the output folder, refusing one that holds something
// unless force says to replace what synth writes there.
func prepare(out string, force bool) error {
	entries, err := os.ReadDir(out)
	if errors.Is(err, fs.ErrNotExist) {
		return os.MkdirAll(out, 0o755)
	}
	if err != nil {
		return exit.With(exit.Config, fmt.Errorf("output folder %s: %w", out, err))
	}
	if len(entries) == 0 {
		return nil
	}
	if !force {
		return exit.With(exit.Config, fmt.Errorf("output folder %s is not empty: choose another, or pass --force to replace an earlier run's hospitals/, sftp/, keys/ and README.txt", out))
	}
	for _, name := range []string{"hospitals", "sftp", "keys", "README.txt"} {
		if err := os.RemoveAll(filepath.Join(out, name)); err != nil {
			return err
		}
	}
	return nil
}

// hospital writes hospital n's contract and extracts.
func (s *settings) hospital(ctx context.Context, out string, n int, rc *recipients) (HospitalSummary, []Key, error) {
	p := newProfile(s.seed, n)
	spec := contractSpec{id: p.id, name: p.name, encryption: s.encryptionOf(n), format: s.format, delimiter: ','}
	if s.shape == Nonlinear {
		spec.families = []string{"ridge", "ridge-pooled", "gbdt", "gbdt-pooled"}
	}
	if d, ok := delimiters[p.id]; ok {
		spec.delimiter = d
	}
	dir := filepath.Join(out, "hospitals", p.id)
	inbound := filepath.Join(out, "sftp", p.id, "inbound")
	for _, d := range []string{dir, inbound} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return HospitalSummary{}, nil, err
		}
	}
	var keys []Key
	var signer *openpgp.Entity
	if s.sign && spec.encryption == "openpgp" {
		spec.signedBy = "signing.pgp.pub"
		pub := filepath.Join(dir, spec.signedBy)
		e, err := newPGPKey(p.name, "extracts@"+p.id+".hospital.invalid", "", pub)
		if err != nil {
			return HospitalSummary{}, nil, err
		}
		signer = e
		keys = append(keys, Key{Path: pub, Kind: "openpgp", Use: "inbound.signed_by of " + p.id + ": its extracts must carry its signature"})
	}
	file := filepath.Join(dir, contract.FileName)
	if err := os.WriteFile(file, contractYAML(spec), 0o644); err != nil {
		return HospitalSummary{}, nil, err
	}
	hs := HospitalSummary{ID: p.id, Name: p.name, Encryption: spec.encryption, Contract: file, Inbound: inbound}

	shock := make([]float64, s.months)
	for m := range shock {
		shock[m] = 1
		for _, sh := range s.shocks {
			if sh.Hospital == p.id && !s.start.AddDate(0, m, 0).Before(sh.From) {
				shock[m] *= sh.Factor
			}
		}
	}
	h := newHospital(p, s.seed, s.start, shock)
	h.nonlinear = s.shape == Nonlinear
	d := newDirt(s.seed, n, s.dirt, s.format == "csv", s.months)
	w := &extractWriter{dir: inbound, format: s.format, delimiter: spec.delimiter,
		seal: rc.sealerFor(spec.encryption, s.armor, signer), suffix: suffix[spec.encryption]}
	for m := range s.months {
		if err := ctx.Err(); err != nil {
			return hs, nil, err
		}
		mo := h.month(m)
		name := mo.start.Format("2006-01")
		if err := w.write(&patientsTable, name, false, d.patients(render(patientColumns, mo.patients))); err != nil {
			return hs, nil, err
		}
		if err := w.write(&doctorsTable, name, false, d.doctors(render(doctorColumns, mo.doctors))); err != nil {
			return hs, nil, err
		}
		if err := w.write(&casesTable, name, false, d.cases(render(caseColumns, mo.cases), m)); err != nil {
			return hs, nil, err
		}
		if fix := d.corrections(m); fix != nil {
			if err := w.write(&casesTable, name, true, fix); err != nil {
				return hs, nil, err
			}
		}
		hs.Cases += len(mo.cases)
	}
	hs.Files = w.files
	hs.Patients = h.patients
	hs.Doctors = len(h.doctors)
	hs.Dirt = d.counts
	return hs, keys, nil
}

// extractWriter writes one hospital's extract files.
type extractWriter struct {
	dir, format, suffix string
	delimiter           rune
	seal                sealer
	files               int
}

func (w *extractWriter) write(t *table, month string, correction bool, rows []row) error {
	plain := fileName(t, month, correction, w.format)
	path := filepath.Join(w.dir, plain+w.suffix)
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 64<<10)
	sealed, err := w.seal(bw, plain)
	if err == nil {
		if w.format == "parquet" {
			err = encodeParquet(sealed, t, rows)
		} else {
			err = encodeCSV(sealed, t, rows, w.delimiter)
		}
	}
	if err == nil {
		err = sealed.Close()
	}
	if err == nil {
		err = bw.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	w.files++
	return nil
}
