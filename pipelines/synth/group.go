package synth

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// specialty is a group-wide line of care: what a case costs before any
// hospital, doctor or patient effect, and who it treats.
type specialty struct {
	name string
	// base is the bill of a zero-night case at price level 1, in the
	// bill's currency unit.
	base float64
	// los is the mean planned length of stay in nights; dayShare the share
	// of day cases (planned_los 0).
	los, dayShare float64
	// emergency is the share of emergency admissions.
	emergency float64
	// Patients' ages: mean and spread, clamped to [minAge, maxAge].
	ageMean, ageSD, minAge, maxAge float64
	// female is the share of women among its new patients.
	female float64
	// weight is its share of a typical hospital's doctors.
	weight float64
}

var specialties = []specialty{
	{name: "cardiology", base: 8200, los: 4, dayShare: 0.15, emergency: 0.55, ageMean: 67, ageSD: 12, minAge: 18, maxAge: 100, female: 0.42, weight: 1.2},
	{name: "gastroenterology", base: 3300, los: 2, dayShare: 0.45, emergency: 0.3, ageMean: 55, ageSD: 16, minAge: 16, maxAge: 100, female: 0.5, weight: 0.8},
	{name: "general_surgery", base: 6100, los: 3, dayShare: 0.25, emergency: 0.45, ageMean: 52, ageSD: 18, minAge: 16, maxAge: 100, female: 0.5, weight: 1.4},
	{name: "internal_medicine", base: 3600, los: 5, dayShare: 0.05, emergency: 0.7, ageMean: 66, ageSD: 16, minAge: 16, maxAge: 104, female: 0.52, weight: 1.6},
	{name: "neurology", base: 5400, los: 5, dayShare: 0.1, emergency: 0.5, ageMean: 60, ageSD: 16, minAge: 16, maxAge: 100, female: 0.5, weight: 0.7},
	{name: "obstetrics", base: 3400, los: 2, dayShare: 0.05, emergency: 0.6, ageMean: 31, ageSD: 5, minAge: 16, maxAge: 48, female: 1, weight: 0.9},
	{name: "oncology", base: 10500, los: 5, dayShare: 0.3, emergency: 0.15, ageMean: 62, ageSD: 12, minAge: 18, maxAge: 98, female: 0.5, weight: 0.8},
	{name: "orthopedics", base: 7400, los: 4, dayShare: 0.2, emergency: 0.35, ageMean: 58, ageSD: 18, minAge: 16, maxAge: 100, female: 0.55, weight: 1.2},
	{name: "pediatrics", base: 2300, los: 2, dayShare: 0.2, emergency: 0.5, ageMean: 7, ageSD: 5, minAge: 0, maxAge: 17, female: 0.48, weight: 0.8},
	{name: "urology", base: 4200, los: 2, dayShare: 0.35, emergency: 0.2, ageMean: 60, ageSD: 15, minAge: 18, maxAge: 100, female: 0.25, weight: 0.6},
}

// Ward classes from the most to the least expensive accommodation.
var wardClasses = []string{"A", "B1", "B2", "C"}

// Ward-class shares by insurance (public, private, self), before a
// hospital's own tilt.
var wardMix = map[string][4]float64{
	"public":  {0.03, 0.12, 0.35, 0.50},
	"private": {0.45, 0.35, 0.15, 0.05},
	"self":    {0.10, 0.25, 0.35, 0.30},
}

var grades = []string{"consultant", "registrar", "resident"}

// The first hospitals of the group: their ids, names and sizes (cases a
// month) are fixed, so that the default group is the same whatever the seed;
// the rest are named h06, h07, ... with sizes drawn from the seed.
var named = []struct {
	id, name string
	size     int
	perDiem  bool
	wings    bool
}{
	{"st-olaf", "St Olaf General Hospital", 1500, false, true},
	{"riverside", "Riverside Medical Centre", 1100, true, false},
	{"northgate", "Northgate Hospital", 800, false, false},
	{"lakeshore", "Lakeshore Community Hospital", 650, true, true},
	{"hillcrest", "Hillcrest University Hospital", 1250, false, false},
}

// MaxHospitals is the largest group synth makes (ids carry two digits).
const MaxHospitals = 99

// hospitalID returns the id of the n-th hospital (0-based).
func hospitalID(n int) string {
	if n < len(named) {
		return named[n].id
	}
	return fmt.Sprintf("h%02d", n+1)
}

// profile is one hospital's hidden truth: what makes its bills its own.
// Every field is drawn from the hospital's own random stream, so that a
// hospital is the same whatever the size of the group.
type profile struct {
	n        int // 0-based position in the group; ids carry n+1
	id, name string
	size     int // mean cases a month
	// price is the hospital's overall price level.
	price float64
	// specWeight is its specialty mix (share of doctors); specFactor its
	// own price of each specialty relative to the group's.
	specWeight, specFactor []float64
	// ward is its premium of each ward class over class C: steep where
	// the hospital runs private wings, else nearly flat. wardTilt scales
	// how often its patients get classes A and B1.
	wings    bool
	ward     [4]float64
	wardTilt float64
	// perDiem: the hospital bills by the night, and its bills grow almost
	// in proportion to the length of stay (losElasticity near 1); else it
	// bills by the case (a DRG-like tariff), and the stay matters little.
	perDiem       bool
	losElasticity float64
	// emergency is the premium of an emergency admission; comorbidity
	// and age the slopes of the log bill in comorbidities and years;
	// insured the effect of each insurance on it (private tariffs).
	emergency, comorbidity, age float64
	insured                     map[string]float64
	// grade is the effect of a doctor's grade on their fees.
	grade map[string]float64
	// inflation a year, and a tariff step that takes effect every year in
	// fiscalMonth.
	inflation, tariffStep float64
	fiscalMonth           int
	// season is the amplitude of the winter price peak; noise the spread
	// of the lognormal noise on the log bill.
	season, noise float64
	// returning is the share of cases that are returning patients.
	returning float64
	// private and self are the insurance shares of new patients.
	private, self float64
	// doctors is the size of the roster at the start.
	doctors int
}

// newProfile draws hospital n's profile from its own stream.
func newProfile(seed uint64, n int) profile {
	r := rand.New(rand.NewPCG(seed, stream(n, streamProfile)))
	p := profile{n: n, id: hospitalID(n)}
	if n < len(named) {
		nm := named[n]
		p.name, p.size, p.perDiem, p.wings = nm.name, nm.size, nm.perDiem, nm.wings
	} else {
		p.name, p.size = fmt.Sprintf("Hospital %02d", n+1), 600+r.IntN(1201)
		p.perDiem, p.wings = r.IntN(2) == 0, r.IntN(2) == 0
	}
	p.price = math.Exp(0.2 * r.NormFloat64())
	p.specWeight = make([]float64, len(specialties))
	p.specFactor = make([]float64, len(specialties))
	sum := 0.0
	for i, s := range specialties {
		p.specWeight[i] = s.weight * math.Exp(0.7*r.NormFloat64())
		sum += p.specWeight[i]
		p.specFactor[i] = math.Exp(0.35 * r.NormFloat64())
	}
	for i := range p.specWeight {
		p.specWeight[i] /= sum
	}
	p.ward[3] = 1
	p.ward[2] = 1 + uniform(r, 0.02, 0.1)
	p.ward[1] = p.ward[2] * (1 + uniform(r, 0.02, 0.1))
	p.ward[0] = p.ward[1] * (1 + uniform(r, 0.05, 0.15))
	if p.wings {
		p.ward[2] = 1 + uniform(r, 0.15, 0.35)
		p.ward[1] = p.ward[2] * (1 + uniform(r, 0.3, 0.6))
		p.ward[0] = p.ward[1] * (1 + uniform(r, 0.5, 0.9))
	}
	p.wardTilt = math.Exp(0.4 * r.NormFloat64())
	p.losElasticity = uniform(r, 0.1, 0.3)
	if p.perDiem {
		p.losElasticity = uniform(r, 0.85, 1.05)
	}
	p.emergency = math.Exp(uniform(r, 0, 0.4))
	p.comorbidity = uniform(r, 0.02, 0.09)
	p.age = uniform(r, 0, 0.008)
	p.insured = map[string]float64{"public": 0, "private": uniform(r, 0, 0.35), "self": uniform(r, -0.2, 0.05)}
	p.grade = map[string]float64{"consultant": uniform(r, 1, 1.4), "registrar": 1, "resident": uniform(r, 0.75, 1)}
	p.inflation = uniform(r, 0.02, 0.07)
	p.tariffStep = uniform(r, 0.01, 0.05)
	p.fiscalMonth = 1 + r.IntN(12)
	p.season = uniform(r, 0.01, 0.05)
	p.noise = uniform(r, 0.12, 0.2)
	p.returning = uniform(r, 0.25, 0.45)
	p.private = uniform(r, 0.1, 0.35)
	p.self = uniform(r, 0.03, 0.12)
	p.doctors = max(len(specialties), int(float64(p.size)/uniform(r, 25, 40)))
	return p
}

// Random streams: each hospital draws its profile, its data and its dirt
// from streams of its own, so that the clean data does not depend on the
// dirt rate, and one hospital does not depend on the others.
const (
	streamProfile = iota
	streamData
	streamDirt
	streamCount
)

func stream(n, kind int) uint64 { return uint64(n*streamCount + kind) }

func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + (hi-lo)*r.Float64() }

// pick draws an index with probability proportional to its weight.
func pick(r *rand.Rand, weights []float64) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	x := r.Float64() * total
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

// poisson draws a Poisson count (Knuth's method; the means here are small).
func poisson(r *rand.Rand, mean float64) int {
	l, k, p := math.Exp(-mean), 0, 1.0
	for {
		p *= r.Float64()
		if p <= l {
			return k
		}
		k++
	}
}
