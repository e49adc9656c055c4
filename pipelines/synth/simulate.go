package synth

import (
	"cmp"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"
)

// hospital simulates one hospital month by month: its roster of doctors,
// its patients (who come back), and its cases with their bills. It is pure:
// the same profile, seed and months give the same records.
type hospital struct {
	p     profile
	r     *rand.Rand
	start time.Time // first day of the first month
	// shock multiplies the bills of each month (1 without a shock).
	shock []float64
	// nonlinear adds the steps and interactions of the Nonlinear shape.
	nonlinear bool

	doctors   []*doctor
	patients  int
	returners []*patient
	cases     int
}

// month is what a hospital sends for one month.
type month struct {
	start    time.Time
	patients []*patient // new this month, or changed, by id
	doctors  []*doctor  // the roster, by id
	cases    []*caseRec // admitted this month, by date and id
}

func newHospital(p profile, seed uint64, start time.Time, shock []float64) *hospital {
	h := &hospital{p: p, r: rand.New(rand.NewPCG(seed, stream(p.n, streamData))), start: start, shock: shock}
	for range p.doctors {
		h.hire()
	}
	return h
}

func (h *hospital) hire() {
	r := h.r
	d := &doctor{
		id:   fmt.Sprintf("D%02d-%04d", h.p.n+1, len(h.doctors)+1),
		spec: pick(r, h.p.specWeight),
		fee:  math.Exp(0.15 * r.NormFloat64()),
		load: uniform(r, 0.5, 1.5),
	}
	d.grade = grades[pick(r, []float64{0.35, 0.35, 0.3})]
	h.doctors = append(h.doctors, d)
}

// month simulates month m (0-based) and returns its records.
func (h *hospital) month(m int) month {
	r := h.r
	first := h.start.AddDate(0, m, 0)
	out := month{start: first}
	if m > 0 {
		h.turnover()
	}
	active, bySpec := h.roster()
	out.doctors = active

	winter := math.Cos(2 * math.Pi * float64(first.Month()-1) / 12)
	n := int(math.Round(float64(h.p.size) * (1 + 0.08*winter) * (1 + 0.03*r.NormFloat64())))
	pool := len(h.returners) // patients of earlier months only
	changed := map[*patient]bool{}
	var fresh []*patient
	days := time.Date(first.Year(), first.Month()+1, 0, 0, 0, 0, 0, time.UTC).Day()
	for range n {
		c := &caseRec{}
		returning := pool > 0 && r.Float64() < h.p.returning
		var pt *patient
		if returning {
			pt = h.returners[r.IntN(pool)]
		}
		c.doctor = h.chooseDoctor(pt, active, bySpec)
		s := specialties[c.doctor.spec]
		c.emergency = r.Float64() < min(0.95, s.emergency*(1+0.2*winter))
		c.admitted = admissionDay(r, first, days, c.emergency)
		if returning {
			if r.Float64() < 0.03 {
				pt.insurance = h.insurance()
				changed[pt] = true
			}
		} else {
			pt = h.newPatient(s, c.admitted)
			fresh = append(fresh, pt)
		}
		pt.spec = c.doctor.spec
		c.patient = pt
		h.caseDetails(c, winter, m)
		out.cases = append(out.cases, c)
	}
	slices.SortStableFunc(out.cases, func(a, b *caseRec) int { return cmp.Compare(a.admitted, b.admitted) })
	for _, c := range out.cases {
		h.cases++
		c.id = fmt.Sprintf("C%02d-%07d", h.p.n+1, h.cases)
	}
	// New patients first appear in this month's file; returning ones only
	// when something about them changed.
	out.patients = fresh
	for pt := range changed {
		out.patients = append(out.patients, pt)
	}
	slices.SortFunc(out.patients, func(a, b *patient) int { return cmp.Compare(a.id, b.id) })
	return out
}

// turnover: a few doctors leave, a few join, some are promoted.
func (h *hospital) turnover() {
	r := h.r
	for _, d := range h.doctors {
		if d.left {
			continue
		}
		if r.Float64() < 0.004 {
			d.left = true
			continue
		}
		switch {
		case d.grade == "resident" && r.Float64() < 1.0/24:
			d.grade = "registrar"
		case d.grade == "registrar" && r.Float64() < 1.0/48:
			d.grade = "consultant"
		}
	}
	for range poisson(r, float64(h.p.doctors)*0.008) {
		h.hire()
	}
}

// roster returns the active doctors, and them by specialty.
func (h *hospital) roster() ([]*doctor, [][]*doctor) {
	var active []*doctor
	bySpec := make([][]*doctor, len(specialties))
	for _, d := range h.doctors {
		if !d.left {
			active = append(active, d)
			bySpec[d.spec] = append(bySpec[d.spec], d)
		}
	}
	return active, bySpec
}

// chooseDoctor weighs doctors by their load; a returning patient mostly
// comes back to the specialty of their last case.
func (h *hospital) chooseDoctor(pt *patient, active []*doctor, bySpec [][]*doctor) *doctor {
	from := active
	if pt != nil && len(bySpec[pt.spec]) > 0 && h.r.Float64() < 0.7 {
		from = bySpec[pt.spec]
	}
	weights := make([]float64, len(from))
	for i, d := range from {
		weights[i] = d.load
	}
	return from[pick(h.r, weights)]
}

// admissionDay draws a day of the month; elective admissions avoid weekends.
func admissionDay(r *rand.Rand, first time.Time, days int, emergency bool) int {
	base := int(first.Unix() / 86400)
	for {
		d := r.IntN(days)
		wd := first.AddDate(0, 0, d).Weekday()
		if emergency || (wd != time.Saturday && wd != time.Sunday) || r.Float64() < 0.2 {
			return base + d
		}
	}
}

func (h *hospital) insurance() string {
	x := h.r.Float64()
	switch {
	case x < h.p.private:
		return "private"
	case x < h.p.private+h.p.self:
		return "self"
	}
	return "public"
}

func (h *hospital) newPatient(s specialty, admitted int) *patient {
	r := h.r
	h.patients++
	pt := &patient{id: fmt.Sprintf("P%02d-%06d", h.p.n+1, h.patients)}
	switch x := r.Float64(); {
	case x < 0.005:
		pt.sex = "X"
	case x < 0.005+0.995*s.female:
		pt.sex = "F"
	default:
		pt.sex = "M"
	}
	age := min(max(s.ageMean+s.ageSD*r.NormFloat64(), s.minAge), s.maxAge)
	pt.birth = admitted - int((age+r.Float64())*365.25)
	pt.insurance = h.insurance()
	pt.effect = 0.25 * r.NormFloat64()
	// Patients with a higher persistent effect (sicker, more complex) are
	// more likely to come back.
	if r.Float64() < min(1, 0.35*math.Exp(1.5*pt.effect)) {
		h.returners = append(h.returners, pt)
	}
	return pt
}

// caseDetails draws what is known at pre-admission, then the bill.
func (h *hospital) caseDetails(c *caseRec, winter float64, m int) {
	r, p := h.r, h.p
	s := specialties[c.doctor.spec]
	pt := c.patient
	c.age = yearsBetween(pt.birth, c.admitted)
	c.comorbidities = min(20, poisson(r, 0.2+max(0, float64(c.age)-30)/25+2*max(0, pt.effect)))
	mix := wardMix[pt.insurance]
	c.ward = pick(r, []float64{mix[0] * p.wardTilt, mix[1] * p.wardTilt, mix[2], mix[3]})

	dayShare := s.dayShare
	if c.emergency {
		dayShare *= 0.3
	}
	if r.Float64() >= dayShare {
		mean := s.los * max(0.3, 1+0.01*float64(c.age-50)) * (1 + 0.08*float64(c.comorbidities))
		if c.emergency {
			mean *= 1.25
		}
		c.plannedLOS = min(60, max(1, int(math.Round(mean*math.Exp(0.35*r.NormFloat64())))))
	}
	// The stay that is billed differs from the one planned: it is not known
	// at pre-admission, so it is not a column.
	los := c.plannedLOS
	if los > 0 {
		los = max(0, los+int(math.Round((0.5+0.25*float64(los))*r.NormFloat64())))
	} else if r.Float64() < 0.1 {
		los = 1
	}
	cancelP := 0.02
	if c.emergency {
		cancelP = 0.004
	}
	c.cancelled = r.Float64() < cancelP

	logBill := math.Log(p.price*s.base*p.specFactor[c.doctor.spec]*p.ward[c.ward]*c.doctor.fee*p.grade[c.doctor.grade]) +
		pt.effect +
		// A stay of three nights costs the same under either tariff.
		p.losElasticity*(math.Log1p(float64(los))-math.Log(4)) +
		p.comorbidity*float64(c.comorbidities) +
		p.age*float64(c.age-50) +
		p.insured[pt.insurance] +
		math.Log(h.priceIndex(m, c.admitted)) +
		math.Log1p(p.season*winter) +
		p.noise*r.NormFloat64()
	if c.emergency {
		logBill += math.Log(p.emergency)
	}
	if h.nonlinear {
		logBill += nonlinearTerms(s.name, wardClasses[c.ward], c.plannedLOS, c.comorbidities)
	}
	if c.cancelled {
		c.bill = math.NaN()
		return
	}
	c.bill = math.Round(math.Exp(logBill)*h.shock[m]*100) / 100
}

// priceIndex is the hospital's price drift on a day of month m: inflation
// since the start, and a tariff step every year in its fiscal month.
func (h *hospital) priceIndex(m, day int) float64 {
	years := float64(day-int(h.start.Unix()/86400)) / 365.25
	steps := 0
	for k := 1; k <= m; k++ {
		if int(h.start.AddDate(0, k, 0).Month()) == h.p.fiscalMonth {
			steps++
		}
	}
	return math.Pow(1+h.p.inflation, years) * math.Pow(1+h.p.tariffStep, float64(steps))
}

// yearsBetween returns the age in whole years on day at of someone born on
// day birth.
func yearsBetween(birth, at int) int {
	b := time.Unix(int64(birth)*86400, 0).UTC()
	a := time.Unix(int64(at)*86400, 0).UTC()
	years := a.Year() - b.Year()
	if a.Month() < b.Month() || (a.Month() == b.Month() && a.Day() < b.Day()) {
		years--
	}
	return years
}

// nonlinearTerms is what the Nonlinear shape adds to the log bill, from
// what is known at pre-admission: a tariff that steps with the planned
// stay (flat within a band), specialty x ward-class interactions (private
// rooms cost far more in some specialties, and less than their class in
// others), and a severity cliff at five comorbidities.
func nonlinearTerms(specialty, ward string, plannedLOS, comorbidities int) float64 {
	var y float64
	switch {
	case plannedLOS >= 10:
		y += 0.9
	case plannedLOS >= 4:
		y += 0.45
	}
	switch {
	case ward == "A" && (specialty == "oncology" || specialty == "cardiology"):
		y += 0.6
	case ward == "A" && specialty == "obstetrics":
		y -= 0.4
	case ward == "C" && specialty == "orthopedics":
		y += 0.35
	}
	if comorbidities >= 5 {
		y += 0.7
	}
	return y
}
