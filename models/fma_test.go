package models

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// predictPath is every function a prediction runs through, from the row
// to the answer.
var predictPath = []string{
	"(*Artifact).Predict", "(*Artifact).answer", "(*Encoder).Encode",
	"(*FittedFeature).standardise", "(*FittedFeature).transform",
	"Transform", "Untransform", "portableLog", "portableExp",
}

var fusedOp = regexp.MustCompile(`\t(VF(N)?M(ADD|SUB)\w*|F(N)?M(ADD|SUB)D)\s`)

// The compiler may fuse a*b+c into one FMA instruction on arm64, and on
// amd64 with GOAMD64=v3; a fused result can differ in the last bit from
// the one training computed on plain amd64. The prediction path rounds
// every product explicitly so that it never fuses; this compiles it for
// those targets and looks for fused instructions.
func TestPredictPathHasNoFusedMultiplyAdd(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the package for other targets")
	}
	for _, target := range [][]string{{"GOARCH=arm64"}, {"GOARCH=amd64", "GOAMD64=v3"}} {
		cmd := exec.Command("go", "build", "-gcflags=-S", "-o", os.DevNull, ".")
		cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), target...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v go build: %v\n%s", target, err, out)
		}
		seen := map[string]bool{}
		fn := ""
		sc := bufio.NewScanner(bytes.NewReader(out))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if name, ok := strings.CutPrefix(line, "github.com/wardml/ward/models."); ok && strings.Contains(line, " STEXT") {
				fn = strings.Fields(name)[0]
				seen[fn] = true
				continue
			}
			if fusedOp.MatchString(line) && slices.Contains(predictPath, fn) {
				t.Errorf("%v: %s has a fused multiply-add: %s", target, fn, strings.TrimSpace(line))
			}
		}
		for _, f := range predictPath {
			if !seen[f] {
				t.Errorf("%v: no code for %s: is the list of the prediction path still true?", target, f)
			}
		}
	}
}
