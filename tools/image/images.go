package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/wardml/ward/tools/manifest"
)

// ErrDeployFailed: DeployAll could not deploy some of the images (the
// others were deployed); each outcome says why.
var ErrDeployFailed = errors.New("deploy failed")

// Line is one hospital's line of ward package --output json (images.json),
// which ward deploy --images reads back: the image by digest, or why there
// is none.
type Line struct {
	Hospital  string            `json:"hospital"`
	Version   string            `json:"version,omitempty"`
	Image     string            `json:"image,omitempty"`
	Tag       string            `json:"tag,omitempty"`
	Platforms map[string]string `json:"platforms,omitempty"`
	Attached  []string          `json:"attached,omitempty"`
	Error     string            `json:"error,omitempty"`
	// Skipped says why a model was not packaged (a failed gate).
	Skipped string `json:"skipped,omitempty"`
}

// Line is what images.json holds of a published image.
func (r *Published) Line() Line {
	out := Line{Hospital: r.Hospital, Version: r.Version, Image: r.Ref.String(), Tag: r.Tag.String(), Platforms: map[string]string{}}
	for p, d := range r.Platforms {
		out.Platforms[p] = d.String()
	}
	for _, a := range r.Attached {
		out.Attached = append(out.Attached, a.ArtifactType+" "+a.Digest.String())
	}
	return out
}

// ParseLines reads images.json, the output of ward package --output json.
func ParseLines(data []byte) ([]Line, error) {
	var lines []Line
	if err := json.Unmarshal(data, &lines); err != nil {
		return nil, err
	}
	return lines, nil
}

// Batch says how DeployAll deploys (ward deploy --images).
type Batch struct {
	// Hospital, when set, deploys only that hospital's image.
	Hospital string
	// Force, DryRun and AllowDowngrade are those of manifest.Deployment.
	Force, DryRun, AllowDowngrade bool
	// SkipRejected reports and skips a digest that was rolled back,
	// instead of failing it: the same inputs give the same digest, so the
	// next scheduled run would otherwise fail until new data arrives.
	SkipRejected bool
	// Log takes a line per image skipped or failed.
	Log *slog.Logger
}

// The outcomes of an image in DeployAll.
const (
	OutcomeDeployed  = "deployed"
	OutcomeUnchanged = "unchanged"
	OutcomeSkipped   = "skipped"
	OutcomeFailed    = "failed"
)

// Deployed is what DeployAll did with one image (ward deploy --images
// --output json).
type Deployed struct {
	Hospital string           `json:"hospital"`
	Image    string           `json:"image,omitempty"`
	Outcome  string           `json:"outcome"` // deployed, unchanged, skipped, failed
	Result   *manifest.Result `json:"result,omitempty"`
	Error    string           `json:"error,omitempty"`
}

// DeployAll is the deploy stage of a package run: it deploys every image
// of lines (images.json) to repo, one commit each, skipping the hospitals
// that were not packaged. A hospital that fails does not stop the others;
// when any failed, the error is ErrDeployFailed. ward deploy --images and
// the demo call it.
func DeployAll(ctx context.Context, repo *manifest.Repo, lines []Line, b Batch) ([]Deployed, error) {
	log := b.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var out []Deployed
	failed := 0
	for _, p := range lines {
		if b.Hospital != "" && p.Hospital != b.Hospital {
			continue
		}
		o := Deployed{Hospital: p.Hospital, Image: p.Image}
		switch {
		case p.Error != "" || p.Image == "":
			o.Outcome, o.Error = OutcomeSkipped, "not packaged: "+p.Error
		default:
			res, err := repo.Deploy(ctx, manifest.Deployment{Hospital: p.Hospital, Image: p.Image, Force: b.Force, DryRun: b.DryRun, AllowDowngrade: b.AllowDowngrade})
			switch {
			case b.SkipRejected && errors.Is(err, manifest.ErrRejected):
				o.Outcome, o.Error = OutcomeSkipped, err.Error()
				log.Warn("deploy skipped: the digest was rolled back", "hospital", p.Hospital, "image", p.Image, "error", err)
			case err != nil:
				o.Outcome, o.Error = OutcomeFailed, err.Error()
				failed++
				log.Error("deploy failed", "hospital", p.Hospital, "image", p.Image, "error", err)
			case res.Status == manifest.StatusUnchanged:
				o.Outcome, o.Result = OutcomeUnchanged, res
			default:
				o.Outcome, o.Result = OutcomeDeployed, res
			}
		}
		out = append(out, o)
	}
	if failed > 0 {
		return out, &Error{Kind: ErrDeployFailed, Err: fmt.Errorf("%d of %d images failed to deploy", failed, len(out))}
	}
	return out, nil
}
