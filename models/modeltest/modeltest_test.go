package modeltest_test

import (
	"reflect"
	"testing"

	"github.com/wardml/ward/internal/contract"
	"github.com/wardml/ward/models/modeltest"
)

// StOlafSpec is the st-olaf contract's training section, as the contract
// loader makes it (the lineage aside), so that the models made in its
// shape are the models training would make.
func TestStOlafSpecIsTheContracts(t *testing.T) {
	h, err := contract.Load("../../internal/contract/testdata/st-olaf/hospital.yaml")
	if err != nil {
		t.Fatal(err)
	}
	got := modeltest.StOlafSpec(t)
	want, err := h.ModelSpec(h.InputColumns(), got.Lineage)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("StOlafSpec differs from the st-olaf contract's:\n got %+v\nwant %+v", got, want)
	}
}
