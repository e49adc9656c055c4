package models

import "math"

// Transform applies the transform named t (NoTransform, Log or Log1p) to x.
// ok is false when x is outside the transform's domain (log needs x > 0,
// log1p needs x > -1) or the result is not finite.
func Transform(t string, x float64) (y float64, ok bool) {
	switch t {
	case Log:
		if !(x > 0) {
			return 0, false
		}
		y = portableLog(x)
	case Log1p:
		if !(x > -1) {
			return 0, false
		}
		y = portableLog(1 + x)
	default:
		y = x
	}
	return y, !math.IsNaN(y) && !math.IsInf(y, 0)
}

// Untransform is the inverse of Transform: exp(y) for log, exp(y)-1 for
// log1p. log1p is defined as log(1+x), so that the pair is exactly the log
// pair shifted by one; the precision it gives up is below 1e-16 of a bill.
func Untransform(t string, y float64) float64 {
	switch t {
	case Log:
		return portableExp(y)
	case Log1p:
		return portableExp(y) - 1
	}
	return y
}

// domain says which values a transform accepts, for error messages.
func domain(t string) string {
	switch t {
	case Log:
		return "log needs a value above 0"
	case Log1p:
		return "log1p needs a value above -1"
	}
	return "not a finite number"
}

// portableLog and portableExp are the FreeBSD msun algorithms that Go's
// math package uses in pure Go, with every product rounded explicitly.
// math.Log and math.Exp run different assembly on amd64 and arm64 (and
// math.Log on amd64 is wrong for subnormals, golang/go#56600), and the
// Go compiler may fuse a*b+c into one FMA instruction on arm64; either can
// change the last bit of a result. A model trained on amd64 serves on both
// architectures, and a served prediction must carry the same bits as the
// one training computed, so the transforms do their own arithmetic, in an
// order and rounding that the Go spec fixes (a conversion to float64
// forbids fusion).

func portableLog(x float64) float64 {
	const (
		ln2Hi = 6.93147180369123816490e-01
		ln2Lo = 1.90821492927058770002e-10
		l1    = 6.666666666666735130e-01
		l2    = 3.999999999940941908e-01
		l3    = 2.857142874366239149e-01
		l4    = 2.222219843214978396e-01
		l5    = 1.818357216161805012e-01
		l6    = 1.531383769920937332e-01
		l7    = 1.479819860511658591e-01
	)
	switch {
	case math.IsNaN(x) || math.IsInf(x, 1):
		return x
	case x < 0:
		return math.NaN()
	case x == 0:
		return math.Inf(-1)
	}
	f1, ki := math.Frexp(x)
	if f1 < math.Sqrt2/2 {
		f1 *= 2
		ki--
	}
	f := f1 - 1
	k := float64(ki)
	s := f / (2 + f)
	s2 := s * s
	s4 := s2 * s2
	t1 := float64(s2 * (l1 + float64(s4*(l3+float64(s4*(l5+float64(s4*l7)))))))
	t2 := float64(s4 * (l2 + float64(s4*(l4+float64(s4*l6)))))
	r := t1 + t2
	hfsq := float64(float64(0.5*f) * f)
	return float64(k*ln2Hi) - ((hfsq - (float64(s*(hfsq+r)) + float64(k*ln2Lo))) - f)
}

func portableExp(x float64) float64 {
	const (
		ln2Hi     = 6.93147180369123816490e-01
		ln2Lo     = 1.90821492927058770002e-10
		log2e     = 1.44269504088896338700e+00
		overflow  = 7.09782712893383973096e+02
		underflow = -7.45133219101941108420e+02
		nearZero  = 1.0 / (1 << 28)
		p1        = 1.66666666666666657415e-01
		p2        = -2.77777777770155933842e-03
		p3        = 6.61375632143793436117e-05
		p4        = -1.65339022054652515390e-06
		p5        = 4.13813679705723846039e-08
	)
	switch {
	case math.IsNaN(x):
		return x
	case x > overflow:
		return math.Inf(1)
	case x < underflow:
		return 0
	case -nearZero < x && x < nearZero:
		return 1 + x
	}
	var k int
	switch {
	case x < 0:
		k = int(float64(log2e*x) - 0.5)
	case x > 0:
		k = int(float64(log2e*x) + 0.5)
	}
	hi := x - float64(float64(k)*ln2Hi)
	lo := float64(float64(k) * ln2Lo)
	r := hi - lo
	t := r * r
	c := r - float64(t*(p1+float64(t*(p2+float64(t*(p3+float64(t*(p4+float64(t*p5)))))))))
	y := 1 - ((lo - float64(r*c)/(2-c)) - hi)
	return math.Ldexp(y, k)
}
