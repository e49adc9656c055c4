package models

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math"
	"math/rand/v2"
	"testing"
)

// ulps is the distance between a and b in units in the last place.
func ulps(a, b float64) uint64 {
	x, y := math.Float64bits(a), math.Float64bits(b)
	if x > y {
		return x - y
	}
	return y - x
}

// testInputs covers bills, lengths of stay, tiny and huge values.
func testInputs() []float64 {
	rng := rand.New(rand.NewPCG(1, 1))
	xs := []float64{1, 2, math.E, 0.5, 1e-300, 1e300, math.SmallestNonzeroFloat64, math.MaxFloat64, 1 + 1e-15, 108429.42}
	for range 20000 {
		xs = append(xs, math.Exp(rng.Float64()*60-30), rng.Float64()*1e6, float64(rng.IntN(400)))
	}
	return xs
}

func TestPortableLogExpAgreeWithMath(t *testing.T) {
	for _, x := range testInputs() {
		// math.Log on amd64 is wrong for subnormals (golang/go#56600):
		// it gives -709.09 for 5e-324. Compared below with the exact value.
		if d := ulps(portableLog(x), math.Log(x)); d > 1 && x >= 0x1p-1022 {
			t.Fatalf("log(%v): %v, math.Log %v: %d ulps apart", x, portableLog(x), math.Log(x), d)
		}
		y := math.Log(x)
		if y > 709 || y < -745 {
			continue
		}
		// Each is within an ulp of the exact value, so 2 apart at most.
		if d := ulps(portableExp(y), math.Exp(y)); d > 2 {
			t.Fatalf("exp(%v): %v, math.Exp %v: %d ulps apart", y, portableExp(y), math.Exp(y), d)
		}
	}
	for _, c := range []struct{ got, want float64 }{
		{portableLog(0), math.Inf(-1)},
		{portableLog(math.Inf(1)), math.Inf(1)},
		{portableExp(1000), math.Inf(1)},
		{portableExp(-1000), 0},
		{portableExp(0), 1},
		{portableLog(5e-324), -744.4400719213812},
	} {
		if c.got != c.want {
			t.Errorf("special case: got %v, want %v", c.got, c.want)
		}
	}
	if !math.IsNaN(portableLog(-1)) || !math.IsNaN(portableExp(math.NaN())) {
		t.Error("log(-1) and exp(NaN) must be NaN")
	}
}

// The bits of the transforms over a fixed set of inputs, taken on
// linux/amd64: any change to their arithmetic (a constant, an order of
// operations) changes what deployed models answer, and must be deliberate.
// That no platform fuses their multiply-adds is the FMA test's job.
const transformBitsSHA256 = "8076a943dde39f67c0aefb049f053ea6ec12e68561ff914ef570954d4910c312"

func TestTransformBitsArePortable(t *testing.T) {
	h := sha256.New()
	var b [8]byte
	for _, x := range testInputs() {
		for _, v := range []float64{portableLog(x), portableExp(math.Log(x) / 2), portableExp(-x / 1e5)} {
			binary.LittleEndian.PutUint64(b[:], math.Float64bits(v))
			h.Write(b[:])
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != transformBitsSHA256 {
		t.Errorf("the transforms' bits changed: hash %s, want %s", got, transformBitsSHA256)
	}
}

func TestTransformRoundTrip(t *testing.T) {
	for _, name := range []string{NoTransform, Log, Log1p} {
		for _, x := range []float64{0.5, 1, 17, 2500.75, 108429.42, 3e6} {
			y, ok := Transform(name, x)
			if !ok {
				t.Fatalf("%s(%v): refused", name, x)
			}
			if back := Untransform(name, y); math.Abs(back-x) > 1e-12*x {
				t.Errorf("%s: %v -> %v -> %v", name, x, y, back)
			}
		}
	}
	for _, c := range []struct {
		name string
		x    float64
	}{{Log, 0}, {Log, -3}, {Log1p, -1}, {Log1p, -7}, {NoTransform, math.NaN()}, {NoTransform, math.Inf(1)}} {
		if _, ok := Transform(c.name, c.x); ok {
			t.Errorf("%s(%v) must be refused", c.name, c.x)
		}
	}
	if y, _ := Transform(Log1p, 0); y != 0 {
		t.Errorf("log1p(0) = %v, want 0", y)
	}
}
