package contract

import "testing"

// FuzzParse feeds bytes to the contract loader: a contract that does not
// load is an error, never a panic, and one that loads has its defaults.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := Parse(data, "fuzz/hospital.yaml")
		if err != nil {
			return
		}
		if !idPattern.MatchString(h.ID) || len(h.Tables) == 0 || h.Thresholds.MaxRejectedRows == nil || h.Inbound.Limits.MaxCellBytes <= 0 {
			t.Fatalf("loaded without its checks or defaults: %+v", h)
		}
		for i := range h.Tables {
			h.Tables[i].PeriodOf("x_2024-01.csv")
		}
	})
}
