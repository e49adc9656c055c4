package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/pipelines/synth"
)

// synthCmd is one command line of ward synth: its flags.
type synthCmd struct {
	out, start, format, encrypt string
	shape                       string
	months, hospitals           int
	seed                        uint64
	dirt                        float64
	armor, sign, force          bool
	recipients, shocks          stringList
}

func init() {
	register(&Command{
		Name:    "synth",
		Summary: "Write a synthetic hospital group: contracts, and monthly encrypted extracts in the SFTP layout",
		Usage:   "synth --out DIR [--hospitals 5] [--months 24] [--seed 1] [--format csv|parquet] [--encrypt none|openpgp|age|mixed] [--recipient KEYFILE] [--dirt 0.002] [--shock ID:YYYY-MM:FACTOR] [--shape loglinear|nonlinear]",
		Help: `Writes DIR/hospitals/<id>/hospital.yaml (the contracts), DIR/sftp/<id>/inbound/
(patients, doctors and cases for each month; the SFTP base path is DIR/sftp),
DIR/keys/ (ward's ingest keys, unless --recipient gives them) and DIR/README.txt.

Here --hospitals is the number of hospitals to make (for other commands it is
the folder of the contracts). The same seed and flags give the same bytes
(for encrypted files: the same bytes once decrypted). --dirt sets the rate of
each kind of dirt (missing values, out-of-range ages, bad dates, duplicate
rows, correction files; see hospitals/README.md); 0 is clean. --shock
multiplies one hospital's bills from a month on, and may be repeated.
--shape nonlinear adds what a linear model cannot fit (a tariff that steps
with the planned stay, specialty x ward-class interactions, a severity cliff
at five comorbidities), so that gradient boosting has something to show.`,
		Example: `ward synth --out .ward/demo
ward synth --out /tmp/group --hospitals 8 --months 36 --format parquet --encrypt age --armor
ward synth --out /tmp/shocked --shock st-olaf:2025-07:1.35 --output json
ward synth --out /tmp/nonlinear --shape nonlinear`,
		Output: true,
		New:    func() Runner { return &synthCmd{} },
	})
}

func (cmd *synthCmd) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cmd.out, "out", "", "output `DIR`")
	fs.IntVar(&cmd.hospitals, "hospitals", synth.DefaultHospitals, "number of hospitals to make (here it is not the contracts folder)")
	fs.IntVar(&cmd.months, "months", synth.DefaultMonths, "months of extracts")
	fs.StringVar(&cmd.start, "start", synth.DefaultStart, "first month, `YYYY-MM`")
	fs.Uint64Var(&cmd.seed, "seed", synth.DefaultSeed, "random seed")
	fs.StringVar(&cmd.format, "format", synth.DefaultFormat, "csv or parquet")
	fs.StringVar(&cmd.encrypt, "encrypt", synth.DefaultEncryption, "none, openpgp, age or mixed (hospitals alternate)")
	fs.BoolVar(&cmd.armor, "armor", false, "ASCII-armor the encrypted extracts")
	fs.BoolVar(&cmd.sign, "sign", false, "each OpenPGP hospital signs its extracts (its public key goes beside its contract)")
	fs.Var(&cmd.recipients, "recipient", "encrypt to this OpenPGP public key or age recipients `KEYFILE` instead of generating keys (repeatable)")
	fs.Float64Var(&cmd.dirt, "dirt", synth.DefaultDirt, "rate of each kind of dirt (0: clean)")
	fs.Var(&cmd.shocks, "shock", "multiply a hospital's bills from a month on: `ID:YYYY-MM:FACTOR` (repeatable)")
	fs.BoolVar(&cmd.force, "force", false, "replace an earlier run's output in DIR")
	fs.StringVar(&cmd.shape, "shape", synth.LogLinear, "shape of the bill: loglinear, or nonlinear (steps and interactions)")
}

func (cmd *synthCmd) Run(ctx context.Context, app *App, _ []string) error {
	first, err := synth.ParseMonth(cmd.start)
	if err != nil {
		return exit.With(exit.Config, fmt.Errorf("--start: %w", err))
	}
	opts := []synth.Option{
		synth.WithHospitals(cmd.hospitals), synth.WithMonths(cmd.months), synth.WithStart(first),
		synth.WithSeed(cmd.seed), synth.WithFormat(cmd.format), synth.WithEncryption(cmd.encrypt),
		synth.WithArmor(cmd.armor), synth.WithSigning(cmd.sign), synth.WithRecipients(cmd.recipients...),
		synth.WithDirt(cmd.dirt), synth.WithForce(cmd.force), synth.WithShape(cmd.shape),
	}
	for _, s := range cmd.shocks {
		sh, err := synth.ParseShock(s)
		if err != nil {
			return exit.With(exit.Config, fmt.Errorf("--shock: %w", err))
		}
		opts = append(opts, synth.WithShocks(sh))
	}
	sum, err := synth.Generate(ctx, cmd.out, opts...)
	if err != nil {
		return err
	}
	app.Log.Info("synthetic group written", "event.action", "synth", "event.outcome", "success",
		"ward.out", sum.Out, "ward.files", sum.Files, "ward.cases", sum.Cases)
	return app.Print(sum, func(w io.Writer) { printSynth(w, sum) })
}

func printSynth(w io.Writer, sum *synth.Summary) {
	fmt.Fprintf(w, "Wrote %d hospitals x %d months (from %s) to %s: %d files, %d cases.\n\n",
		len(sum.Hospitals), sum.Months, sum.Start, sum.Out, sum.Files, sum.Cases)
	sum.WriteTable(w)
	fmt.Fprintf(w, "\nContracts: %s (WARD_HOSPITALS)\nDrop box:  %s (the SFTP base path)\n", sum.Contracts, sum.SFTP)
	for _, k := range sum.Keys {
		fmt.Fprintf(w, "Key:       %s (%s)\n", k.Path, k.Use)
	}
}
