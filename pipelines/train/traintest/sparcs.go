package traintest

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// SPARCSFamilies are the families the SPARCS contracts list.
var SPARCSFamilies = []string{"ridge", "ridge-pooled", "gbdt", "gbdt-pooled"}

// SPARCS writes the SPARCS 2020 musculoskeletal development set
// (shared/data/sparcs-2020-msk-dev.csv) as a group of real hospitals, one
// per facility: DIR/hospitals/<id>/hospital.yaml (its contract: the
// file's own headers, "NA" as missing, log charges on the case columns
// and log1p of the stay, a random quarter validated, every family a
// candidate) and DIR/sftp/<id>/inbound/discharges_2020.csv (the
// facility's rows as the file has them, with a case id in front). It
// returns the folder of the contracts, which LoadGroup loads.
func SPARCS(csvPath, dir string, families []string) (string, error) {
	f, err := os.Open(csvPath)
	if err != nil {
		return "", err
	}
	defer f.Close()
	r := csv.NewReader(f)
	header, err := r.Read()
	if err != nil {
		return "", fmt.Errorf("%s: header: %w", csvPath, err)
	}
	fac := slices.Index(header, "Permanent.Facility.Id")
	if fac < 0 {
		return "", fmt.Errorf("%s: no column Permanent.Facility.Id: not the SPARCS development set", csvPath)
	}
	rows := map[string][][]string{}
	var ids []string
	for line := 2; ; line++ {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return "", fmt.Errorf("%s: line %d: %w", csvPath, line, err)
		}
		id := rec[fac]
		if _, ok := rows[id]; !ok {
			ids = append(ids, id)
		}
		rows[id] = append(rows[id], append([]string{strconv.Itoa(line - 1)}, rec...))
	}
	contracts := filepath.Join(dir, "hospitals")
	for _, id := range ids {
		hid := "sparcs-" + id
		cdir := filepath.Join(contracts, hid)
		ddir := filepath.Join(dir, "sftp", hid, "inbound")
		for _, d := range []string{cdir, ddir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return "", err
			}
		}
		if err := os.WriteFile(filepath.Join(cdir, "hospital.yaml"), []byte(sparcsContract(hid, id, families)), 0o644); err != nil {
			return "", err
		}
		out, err := os.Create(filepath.Join(ddir, "discharges_2020.csv"))
		if err != nil {
			return "", err
		}
		w := csv.NewWriter(out)
		_ = w.Write(append([]string{"case_id"}, header...))
		_ = w.WriteAll(rows[id])
		if err := w.Error(); err != nil {
			out.Close()
			return "", err
		}
		if err := out.Close(); err != nil {
			return "", err
		}
	}
	return contracts, nil
}

func sparcsContract(hid, facility string, families []string) string {
	return fmt.Sprintf(`# SPARCS 2020 musculoskeletal discharges of facility %s (written by
# traintest.SPARCS from shared/data/sparcs-2020-msk-dev.csv).
id: %s
name: SPARCS facility %s
inbound:
  encryption: none
tables:
  - name: discharges
    pattern: "discharges_*.csv"
    key: [case_id]
    strict: false
    columns:
      - {name: case_id, type: int, required: true}
      - {name: facility, header: Permanent.Facility.Id, type: string, required: true}
      - {name: total_charges, header: Total.Charges, type: float, min: 0, required: true}
      - {name: los, type: int, min: 0}
      - {name: age, type: string, missing: ["NA"]}
      - {name: gender, header: Gender, type: string, missing: ["NA"]}
      - {name: drg, header: APR.DRG.Code, type: string, missing: ["NA"]}
      - {name: procedure, header: CCSR.Procedure.Code, type: string, missing: ["NA"]}
      - {name: payment, header: Payment.Typology.1, type: string, missing: ["NA"]}
      - {name: severity, header: illseveritydesc, type: string, missing: ["NA"]}
      - {name: medical_surgical, header: APR.Medical.Surgical.Description, type: string, missing: ["NA"]}
training:
  table: discharges
  target: total_charges
  target_transform: log
  features:
    - {name: los, kind: numeric, transform: log1p}
    - {name: age, kind: categorical}
    - {name: gender, kind: categorical}
    - {name: drg, kind: categorical}
    - {name: procedure, kind: categorical}
    - {name: payment, kind: categorical}
    - {name: severity, kind: categorical}
    - {name: medical_surgical, kind: categorical}
  split: {kind: random, fraction: 0.25, seed: 1}
  model:
    families: [%s]
  min_rows: 50
`, facility, hid, facility, strings.Join(families, ", "))
}
