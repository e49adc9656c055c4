// Command sparcs writes the SPARCS 2020 musculoskeletal development set
// (shared/data/sparcs-2020-msk-dev.csv) as a group of 60 real hospitals:
// DIR/hospitals/<id>/hospital.yaml and DIR/sftp/<id>/inbound/, for
// `ward ingest --from DIR/sftp` and `ward train`.
//
//	go run ./tools/dev/sparcs --csv ../shared/data/sparcs-2020-msk-dev.csv --out DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/wardml/ward/pipelines/train/traintest"
)

func main() {
	csvPath := flag.String("csv", "../shared/data/sparcs-2020-msk-dev.csv", "the development set `FILE`")
	out := flag.String("out", "", "output `DIR`")
	families := flag.String("families", strings.Join(traintest.SPARCSFamilies, ","), "model families the contracts list, comma-separated")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "sparcs: --out: missing (the folder to write the contracts and extracts to)")
		os.Exit(2)
	}
	contracts, err := traintest.SPARCS(*csvPath, *out, strings.Split(*families, ","))
	if err != nil {
		fmt.Fprintf(os.Stderr, "sparcs: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(contracts)
}
