package synth

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/wardml/ward/models"
)

// DirtCounts counts the dirt put into a hospital's extracts, by kind (see
// the package documentation for what each kind is and what ingest does
// with it).
type DirtCounts struct {
	// Missing is the number of cells blanked in optional columns.
	Missing int `json:"missing"`
	// BadAges is the number of case rows with an age out of range.
	BadAges int `json:"bad_ages"`
	// BadDates is the number of rows with a date that does not parse.
	BadDates int `json:"bad_dates"`
	// Duplicates is the number of case rows sent twice in one file.
	Duplicates int `json:"duplicates"`
	// Corrections is the number of cases re-sent, with the right bill, in a
	// correction file; CorrectionFiles the number of those files.
	Corrections     int `json:"corrections"`
	CorrectionFiles int `json:"correction_files"`
}

// Rejected is the number of rows that ingest should reject (bad ages, bad
// dates, and the second copy of each duplicate).
func (d DirtCounts) Rejected() int { return d.BadAges + d.BadDates + d.Duplicates }

func (d *DirtCounts) add(o DirtCounts) {
	d.Missing += o.Missing
	d.BadAges += o.BadAges
	d.BadDates += o.BadDates
	d.Duplicates += o.Duplicates
	d.Corrections += o.Corrections
	d.CorrectionFiles += o.CorrectionFiles
}

// dirt spoils a hospital's clean rows at a rate, from a random stream of
// its own, so that the clean data stays the same whatever the rate.
type dirt struct {
	r    *rand.Rand
	rate float64
	// dates is false for typed formats (Parquet), where a date that does
	// not parse cannot be written.
	dates  bool
	months int
	counts DirtCounts
	// pending holds the correction rows by the month they are sent in.
	pending map[int][]row
	// ungraded are the doctors whose grade the roster never gives: a
	// property of the doctor, the same in every monthly roster, so that a
	// blank does not come and go with the month (and with it the grade of
	// every case of theirs, as the database joins the latest roster).
	ungraded map[string]bool
}

func newDirt(seed uint64, n int, rate float64, textDates bool, months int) *dirt {
	return &dirt{
		r:        rand.New(rand.NewPCG(seed, stream(n, streamDirt))),
		rate:     rate,
		dates:    textDates,
		months:   months,
		pending:  map[int][]row{},
		ungraded: map[string]bool{},
	}
}

func (d *dirt) hit() bool { return d.rate > 0 && d.r.Float64() < d.rate }

// The columns each kind of dirt touches.
var (
	patientsMissing = []string{"sex", "birth_date", "insurance"}
	doctorsMissing  = []string{"grade"}
	casesMissing    = []string{"age", "planned_los", "comorbidities"}
)

// blank empties optional cells.
func (d *dirt) blank(t *table, rows []row, names []string) {
	idx := make([]int, len(names))
	for i, n := range names {
		idx[i] = t.index(n)
	}
	for _, r := range rows {
		for _, j := range idx {
			if d.hit() {
				r[j] = cell{v: models.Missing}
				d.counts.Missing++
			}
		}
	}
}

// badDate rewrites a date cell in a form the contract does not accept.
func (d *dirt) badDate(t *table, rows []row, name string) {
	if !d.dates {
		return
	}
	j := t.index(name)
	for _, r := range rows {
		if r[j].v.Null || !d.hit() {
			continue
		}
		day := r[j].v.Time(models.Date)
		var raw string
		switch d.r.IntN(3) {
		case 0: // day first
			raw = day.Format("02/01/2006")
		case 1: // no separators
			raw = day.Format("20060102")
		default: // a timestamp where a date belongs
			raw = day.Add(time.Duration(8+d.r.IntN(10)) * time.Hour).Format("2006-01-02 15:04")
		}
		r[j] = cell{raw: raw, bad: true}
		d.counts.BadDates++
	}
}

func (d *dirt) patients(rows []row) []row {
	d.blank(&patientsTable, rows, patientsMissing)
	d.badDate(&patientsTable, rows, "birth_date")
	return rows
}

// doctors blanks the grade of the ungraded doctors, decided when a doctor
// first appears in a roster.
func (d *dirt) doctors(rows []row) []row {
	id, j := doctorsTable.index("doctor_id"), doctorsTable.index(doctorsMissing[0])
	for _, r := range rows {
		blank, seen := d.ungraded[r[id].v.Str]
		if !seen {
			blank = d.hit()
			d.ungraded[r[id].v.Str] = blank
		}
		if blank {
			r[j] = cell{v: models.Missing}
			d.counts.Missing++
		}
	}
	return rows
}

// cases spoils month m's case rows and returns them with their duplicates.
// A case billed wrong keeps the wrong bill here; its correction, with the
// true bill, is sent in the file of one of the next two months.
func (d *dirt) cases(rows []row, m int) []row {
	t := &casesTable
	bill, status, age := t.index("total_bill"), t.index("status"), t.index("age")
	for _, r := range rows {
		if r[bill].v.Null || r[status].v.Str != "completed" || !d.hit() {
			continue
		}
		later := m + 1
		if d.r.Float64() < 0.3 {
			later = m + 2
		}
		if later >= d.months {
			later = m + 1
		}
		if later >= d.months {
			continue
		}
		fixed := slices.Clone(r)
		// Charges left out, or billed twice.
		f := uniform(d.r, 0.55, 0.9)
		if d.r.Float64() < 0.5 {
			f = uniform(d.r, 1.1, 1.6)
		}
		r[bill] = cell{v: models.Number(math.Round(r[bill].v.Num*f*100) / 100)}
		d.pending[later] = append(d.pending[later], fixed)
		d.counts.Corrections++
	}
	d.blank(t, rows, casesMissing)
	for _, r := range rows {
		if r[age].v.Null || !d.hit() {
			continue
		}
		r[age] = cell{v: models.Number(float64([]int{150, -1, 999, 200, -7}[d.r.IntN(5)]))}
		d.counts.BadAges++
	}
	d.badDate(t, rows, "admitted_at")
	out := make([]row, 0, len(rows))
	for _, r := range rows {
		out = append(out, r)
		if d.hit() {
			out = append(out, slices.Clone(r))
			d.counts.Duplicates++
		}
	}
	return out
}

// corrections returns the correction rows sent in month m, by case id.
func (d *dirt) corrections(m int) []row {
	rows := d.pending[m]
	delete(d.pending, m)
	if len(rows) == 0 {
		return nil
	}
	id := casesTable.index("case_id")
	slices.SortFunc(rows, func(a, b row) int { return cmp.Compare(a[id].v.Str, b[id].v.Str) })
	d.counts.CorrectionFiles++
	return rows
}
