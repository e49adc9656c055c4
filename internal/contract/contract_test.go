package contract

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadExample(t *testing.T) {
	h, err := Load("testdata/st-olaf/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if h.ID != "st-olaf" || len(h.Tables) != 3 || h.Training.Split.Validation != (Period{Months: 3}) {
		t.Fatalf("loaded %+v", h)
	}
	if h.Training.ID != "case_id" || h.Thresholds.MaxErrors != 1000 || h.Image.Repository != "ward/st-olaf" {
		t.Fatalf("defaults not applied: id=%q maxErrors=%d", h.Training.ID, h.Thresholds.MaxErrors)
	}
	if len(h.Hash) != 64 {
		t.Fatalf("hash %q", h.Hash)
	}
	if h.Feedback.OnDegraded != PolicyAlert || h.Feedback.OnDrift != PolicyAlert {
		t.Fatalf("feedback policies default to %q and %q; want alert", h.Feedback.OnDegraded, h.Feedback.OnDrift)
	}
	var names []string
	for _, c := range h.InputColumns() {
		names = append(names, c.Name)
	}
	want := "case_id patient_id doctor_id admitted_at admission_type ward_class age planned_los comorbidities status total_bill sex birth_date insurance specialty grade"
	if strings.Join(names, " ") != want {
		t.Fatalf("input columns\n got %s\nwant %s", strings.Join(names, " "), want)
	}
	if tb := h.TableFor("cases_2025-01.csv.gpg"); tb == nil || tb.Name != "cases" {
		t.Fatalf("TableFor cases file = %v", tb)
	}
	if !h.IsCorrection("cases_2025-01_correction.csv.gpg") || h.IsCorrection("cases_2025-01.csv.gpg") {
		t.Fatal("IsCorrection")
	}
}

func TestSparcsContractReadsTheRealHeader(t *testing.T) {
	h, err := Load("testdata/sparcs/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("testdata/sparcs/sparcs-2016-sample.csv")
	if err != nil {
		t.Fatal(err)
	}
	header := strings.Split(strings.SplitN(string(data), "\n", 2)[0], ",")
	tb := h.Table("discharges")
	if len(header) != len(tb.Columns) {
		t.Fatalf("header has %d columns, contract %d", len(header), len(tb.Columns))
	}
	for i, c := range tb.Columns {
		if got := strings.TrimSpace(header[i]); got != c.FileHeader() {
			t.Errorf("column %d: file header %q, contract %q", i, got, c.FileHeader())
		}
	}
	v, ferr := tb.Column("total_charges").ParseText("108,429.42")
	if ferr != nil || v.Num != 108429.42 {
		t.Fatalf("thousands: %v %v", v, ferr)
	}
}

func TestBadContracts(t *testing.T) {
	base, err := os.ReadFile("testdata/st-olaf/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, old, new, want string
	}{
		{"unknown key", "  max_rejected_rows: 0.05", "  max_rejected_row: 0.05", "line 46: unknown key max_rejected_row"},
		{"bad id", "id: st-olaf", "id: St Olaf", `id "St Olaf"`},
		{"bad encryption", "encryption: openpgp", "encryption: rot13", `inbound: encryption "rot13": want none, openpgp or age`},
		{"unknown type", "{name: age, type: int,", "{name: age, type: integer,", `columns[6]: column age: unknown type "integer"`},
		{"bad pattern", `pattern: "^P[0-9]{6}$"`, `pattern: "^P[0-9"`, "column patient_id: pattern"},
		{"key not declared", "key: [case_id]", "key: [case_no]", `key: column "case_no" is not declared`},
		{"feature on missing column", "{name: comorbidities, kind: numeric}", "{name: comorbidity, kind: numeric}", `training: features[2]: column "comorbidity" is not in cases or its joins`},
		{"numeric feature on string", "{name: sex, kind: categorical}", "{name: sex, kind: numeric}", "numeric needs an int, float or bool column, and sex is string"},
		{"target missing", "target: total_bill", "target: bill", `training: target: column "bill" is not in cases`},
		{"join on non-key", "{table: doctors, on: {doctor_id: doctor_id}}", "{table: doctors, on: {doctor_id: specialty}}", "joins: doctors: must join on its key (doctor_id)"},
		{"bad period", "validation: 3mo", "validation: 3 months", `period "3 months"`},
		{"bad cleaning", "- drop_missing: total_bill", "- drop_missing: total_bil", `cleaning[1]: column "total_bil"`},
		{"two cleaning rules in one", "- drop_missing: total_bill", "- {drop_missing: total_bill, drop_if: {column: status, in: [x]}}", "want exactly one of"},
		{"bad gate metric", "metric: mae", "metric: r2", `gate: metric "r2"`},
		{"target as feature", "{name: age, kind: numeric}", "{name: total_bill, kind: numeric}", "is the target"},
		{"wrong value type", "min_cases: 50", "min_cases: fifty", "cannot unmarshal"},
		{"retrain on degraded", "min_cases: 50", "min_cases: 50\n  on_degraded: retrain", `feedback: on_degraded "retrain": want rollback, alert or none`},
		{"rollback on drift", "min_cases: 50", "min_cases: 50\n  on_drift: rollback", `feedback: on_drift "rollback": want retrain, alert or none`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if !strings.Contains(string(base), tc.old) {
				t.Fatalf("the example has no %q", tc.old)
			}
			data := strings.Replace(string(base), tc.old, tc.new, 1)
			_, err := Parse([]byte(data), "hospitals/st-olaf/hospital.yaml")
			if err == nil {
				t.Fatalf("no error; want %q", tc.want)
			}
			if !strings.HasPrefix(err.Error(), "contract hospitals/st-olaf/hospital.yaml: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q\nwant it to name the file and contain %q", err, tc.want)
			}
		})
	}
}

func TestSelect(t *testing.T) {
	dir := t.TempDir()
	data, _ := os.ReadFile("testdata/st-olaf/hospital.yaml")
	os.MkdirAll(filepath.Join(dir, "st-olaf"), 0o755)
	os.WriteFile(filepath.Join(dir, "st-olaf", FileName), data, 0o644)
	if _, err := Select(dir, nil, false); err == nil || !strings.Contains(err.Error(), "--all") {
		t.Fatalf("no hospital named: %v", err)
	}
	if _, err := Select(dir, []string{"elsewhere"}, false); err == nil || !strings.Contains(err.Error(), "known: st-olaf") {
		t.Fatalf("unknown hospital: %v", err)
	}
	hs, err := Select(dir, nil, true)
	if err != nil || len(hs) != 1 {
		t.Fatalf("all: %v %v", hs, err)
	}
	os.MkdirAll(filepath.Join(dir, "other"), 0o755)
	os.WriteFile(filepath.Join(dir, "other", FileName), data, 0o644)
	if _, err := Select(dir, nil, true); err == nil || !strings.Contains(err.Error(), `differs from its folder name "other"`) {
		t.Fatalf("id mismatch: %v", err)
	}
}

func TestPeriods(t *testing.T) {
	for in, want := range map[string]Period{"3mo": {Months: 3}, "1y": {Months: 12}, "2w": {Days: 14}, "90d": {Days: 90}, "0": {}} {
		got, err := ParsePeriod(in)
		if err != nil || got != want {
			t.Errorf("ParsePeriod(%q) = %v, %v", in, got, err)
		}
	}
}

func TestLimitsAndPeriod(t *testing.T) {
	for in, want := range map[string]ByteSize{"65536": 65536, "64KiB": 64 << 10, "1 GiB": 1 << 30, "100MB": 100e6, "0": 0} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5GiB", "lots", "99999999999TiB"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("ParseByteSize(%q): no error", bad)
		}
	}
	if s := (64 << 20 * ByteSize(1)).String(); s != "64 MiB" {
		t.Errorf("String = %q", s)
	}
	h, err := Load("testdata/st-olaf/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if l := h.Inbound.Limits; l.MaxPlaintextBytes != DefaultMaxPlaintextBytes || l.MaxCellBytes != DefaultMaxCellBytes || l.MaxPageBytes != DefaultMaxPageBytes {
		t.Errorf("default limits: %+v", l)
	}
	if h.Reports.ShowValues {
		t.Error("values shown by default")
	}
	tb := &h.Tables[0]
	if p := tb.PeriodOf("x_2023-12.csv.gpg"); p != "2023-12" {
		t.Errorf("PeriodOf = %q", p)
	}
	if p := tb.PeriodOf("x_correction.csv"); p != "" {
		t.Errorf("PeriodOf = %q", p)
	}
}
