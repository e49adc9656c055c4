package synth

import (
	"fmt"

	"github.com/wardml/ward/models"
)

// The three tables a hospital sends every month, as records. The columns
// below say how each becomes a row: the contract that synth writes, the
// files and the dirt all read these definitions, so they cannot disagree.

type patient struct {
	id        string
	sex       string
	birth     int // days since 1970-01-01
	insurance string
	// effect is the persistent patient effect on the log bill (hidden).
	effect float64
	// spec is the specialty of the patient's last case.
	spec int
}

type doctor struct {
	id    string
	spec  int
	grade string
	// fee is the doctor's own fee level, before the grade's (hidden);
	// load how many cases they take, relative to their colleagues.
	fee, load float64
	left      bool
}

type caseRec struct {
	id            string
	patient       *patient
	doctor        *doctor
	admitted      int // days since 1970-01-01
	emergency     bool
	ward          int
	age           int
	plannedLOS    int
	comorbidities int
	cancelled     bool
	// bill is the true total bill, after any shock (NaN when cancelled).
	bill float64
}

// column is a contract column with the function that reads its value from
// a record.
type column[T any] struct {
	models.Column
	value func(*T) models.Value
}

func ptr[T any](v T) *T { return &v }

var patientColumns = []column[patient]{
	{models.Column{Name: "patient_id", Type: models.String, Required: true, Pattern: `^P[0-9]{2}-[0-9]{6}$`},
		func(p *patient) models.Value { return models.Text(p.id) }},
	{models.Column{Name: "sex", Type: models.String, Allowed: []string{"F", "M", "X"}},
		func(p *patient) models.Value { return models.Text(p.sex) }},
	{models.Column{Name: "birth_date", Type: models.Date},
		func(p *patient) models.Value { return models.Number(float64(p.birth)) }},
	{models.Column{Name: "insurance", Type: models.String, Allowed: []string{"public", "private", "self"}},
		func(p *patient) models.Value { return models.Text(p.insurance) }},
}

var doctorColumns = []column[doctor]{
	{models.Column{Name: "doctor_id", Type: models.String, Required: true, Pattern: `^D[0-9]{2}-[0-9]{4}$`},
		func(d *doctor) models.Value { return models.Text(d.id) }},
	{models.Column{Name: "specialty", Type: models.String, Required: true, Allowed: specialtyNames()},
		func(d *doctor) models.Value { return models.Text(specialties[d.spec].name) }},
	{models.Column{Name: "grade", Type: models.String, Allowed: grades},
		func(d *doctor) models.Value { return models.Text(d.grade) }},
}

var caseColumns = []column[caseRec]{
	{models.Column{Name: "case_id", Type: models.String, Required: true, Pattern: `^C[0-9]{2}-[0-9]{7}$`},
		func(c *caseRec) models.Value { return models.Text(c.id) }},
	{models.Column{Name: "patient_id", Type: models.String, Required: true},
		func(c *caseRec) models.Value { return models.Text(c.patient.id) }},
	{models.Column{Name: "doctor_id", Type: models.String, Required: true},
		func(c *caseRec) models.Value { return models.Text(c.doctor.id) }},
	{models.Column{Name: "admitted_at", Type: models.Date, Required: true},
		func(c *caseRec) models.Value { return models.Number(float64(c.admitted)) }},
	{models.Column{Name: "admission_type", Type: models.String, Required: true, Allowed: []string{"elective", "emergency"}},
		func(c *caseRec) models.Value {
			if c.emergency {
				return models.Text("emergency")
			}
			return models.Text("elective")
		}},
	{models.Column{Name: "ward_class", Type: models.String, Required: true, Allowed: wardClasses},
		func(c *caseRec) models.Value { return models.Text(wardClasses[c.ward]) }},
	{models.Column{Name: "age", Type: models.Int, Min: ptr(0.0), Max: ptr(110.0)},
		func(c *caseRec) models.Value { return models.Number(float64(c.age)) }},
	{models.Column{Name: "planned_los", Type: models.Int, Min: ptr(0.0), Max: ptr(365.0)},
		func(c *caseRec) models.Value { return models.Number(float64(c.plannedLOS)) }},
	{models.Column{Name: "comorbidities", Type: models.Int, Min: ptr(0.0), Max: ptr(20.0)},
		func(c *caseRec) models.Value { return models.Number(float64(c.comorbidities)) }},
	{models.Column{Name: "status", Type: models.String, Allowed: []string{"completed", "cancelled"}},
		func(c *caseRec) models.Value {
			if c.cancelled {
				return models.Text("cancelled")
			}
			return models.Text("completed")
		}},
	{models.Column{Name: "total_bill", Type: models.Float, Min: ptr(0.0)},
		func(c *caseRec) models.Value {
			if c.cancelled {
				return models.Missing
			}
			return models.Number(c.bill)
		}},
}

func specialtyNames() []string {
	out := make([]string, len(specialties))
	for i, s := range specialties {
		out[i] = s.name
	}
	return out
}

// table is one table of the extracts as the contract declares it.
type table struct {
	name       string
	key        string
	timeColumn string
	joins      []*table // tables joined on their key column, of the same name here
	columns    []models.Column
}

func columnsOf[T any](cols []column[T]) []models.Column {
	out := make([]models.Column, len(cols))
	for i, c := range cols {
		out[i] = c.Column
	}
	return out
}

// The tables in the order the contract declares them and synth writes
// them each month (a case's patient and doctor arrive before, or with, it).
var (
	patientsTable = table{name: "patients", key: "patient_id", columns: columnsOf(patientColumns)}
	doctorsTable  = table{name: "doctors", key: "doctor_id", columns: columnsOf(doctorColumns)}
	casesTable    = table{name: "cases", key: "case_id", timeColumn: "admitted_at",
		joins: []*table{&patientsTable, &doctorsTable}, columns: columnsOf(caseColumns)}
	tables = []*table{&patientsTable, &doctorsTable, &casesTable}
)

// index returns the position of a column.
func (t *table) index(name string) int {
	for i, c := range t.columns {
		if c.Name == name {
			return i
		}
	}
	panic(fmt.Sprintf("synth: table %s has no column %s", t.name, name))
}

// cell is one value of a row as an extract carries it: a typed value, or,
// where dirt put it, raw text that does not parse as the column's type.
type cell struct {
	v   models.Value
	raw string
	bad bool
}

type row []cell

// render turns records into rows in the columns' order.
func render[T any](cols []column[T], recs []*T) []row {
	out := make([]row, len(recs))
	for i, rec := range recs {
		r := make(row, len(cols))
		for j, c := range cols {
			r[j] = cell{v: c.value(rec)}
		}
		out[i] = r
	}
	return out
}
