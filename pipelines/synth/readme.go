package synth

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"text/tabwriter"
)

// readme is the manifest written beside the data: what was generated, with
// which options, and how to point ward at it. It names paths relative to
// the output folder, so that the same options give the same bytes.
func readme(s *settings, sum *Summary) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "A synthetic hospital group, written by ward synth (pipelines/synth).\n\n")
	fmt.Fprintf(&b, "Generated with:\n  %s\n\n", sum.Command)
	fmt.Fprintf(&b, "The same options give the same bytes: the contracts and the plaintext of every\n")
	fmt.Fprintf(&b, "extract. Encryption draws fresh randomness, so encrypted files differ from run\n")
	fmt.Fprintf(&b, "to run, but decrypt to the same bytes.\n\n")
	fmt.Fprintf(&b, "Layout:\n")
	fmt.Fprintf(&b, "  hospitals/<id>/hospital.yaml   the contracts: WARD_HOSPITALS=DIR/hospitals\n")
	fmt.Fprintf(&b, "  sftp/<id>/inbound/             the drop box: serve DIR/sftp as the SFTP base path\n")
	fmt.Fprintf(&b, "                                 (WARD_SFTP=sftp://user@host:port/DIR/sftp)\n")
	if len(sum.Keys) > 0 {
		fmt.Fprintf(&b, "  keys/                          ward's ingest keys (generated; no passphrase)\n")
	}
	fmt.Fprintf(&b, "\nEach month, each hospital sends patients_YYYY-MM, doctors_YYYY-MM (its whole\n")
	fmt.Fprintf(&b, "roster) and cases_YYYY-MM (the cases admitted that month); a correction file,\n")
	fmt.Fprintf(&b, "cases_YYYY-MM_correction, re-sends cases of the two months before with their\n")
	fmt.Fprintf(&b, "right bill. Dirt, at rate %g, is documented in hospitals/README.md.\n\n", s.dirt)

	sum.WriteTable(&b)
	for _, sh := range s.shocks {
		fmt.Fprintf(&b, "\nShock: %s's bills are multiplied by %g from %s on.\n", sh.Hospital, sh.Factor, sh.From.Format("2006-01"))
	}
	if len(sum.Keys) > 0 {
		fmt.Fprintf(&b, "\nKeys (fresh each run):\n")
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		for _, k := range sum.Keys {
			rel, err := filepath.Rel(sum.Out, k.Path)
			if err != nil {
				rel = k.Path
			}
			fmt.Fprintf(tw, "  %s\t%s\n", rel, k.Use)
		}
		tw.Flush()
	}
	return []byte(b.String())
}

// WriteTable writes one line per hospital: its encryption, files, cases and
// dirt counts.
func (s *Summary) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOSPITAL\tENCRYPTION\tFILES\tCASES\tMISSING\tBAD AGES\tBAD DATES\tDUPLICATES\tCORRECTIONS\tCORRECTION FILES")
	for _, h := range s.Hospitals {
		d := h.Dirt
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\n", h.ID, h.Encryption, h.Files, h.Cases,
			d.Missing, d.BadAges, d.BadDates, d.Duplicates, d.Corrections, d.CorrectionFiles)
	}
	tw.Flush()
}
