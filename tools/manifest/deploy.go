package manifest

import (
	"context"
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// listable is a signer that says its public key (LoadSigner's).
type listable interface{ Public() any }

// checkExpected refuses a change when the hospital's live release is not
// the one expected (*expect: a digest, ExpectNone, or "" to take the live
// one now, which later attempts then expect).
func checkExpected(expect *string, live *Release, action, id, file string) error {
	found := ExpectNone
	if live != nil {
		found = live.Digest
	}
	if *expect == "" {
		*expect = found
		return nil
	}
	if *expect == found {
		return nil
	}
	what := found
	if live != nil {
		what = fmt.Sprintf("%s (%s)", live.Digest, live.Version)
	}
	return fail(ErrMoved, "%s %s: %s holds %s, not %s that this %s expected to replace: another change landed first; nothing committed. Look at it (ward history --hospital %s), then run again, or pass --expect-digest %s to replace it", action, id, file, what, *expect, action, id, found)
}

// Init writes the layout (base/ and a README) into the repo as one commit,
// unless base/ is there already. Hospitals' folders come with their first
// deploy, which is what pins their first image.
func (r *Repo) Init(ctx context.Context, dryRun bool) (*Result, error) {
	return r.InitTrust(ctx, dryRun, nil)
}

// InitTrust is Init that also writes the first trust file (TrustFile) with
// the content trust (ward manifest init --trust FILE). The commit must then
// be signed (WARD_MANIFEST_SIGN_KEY) by a key it lists, as every later
// commit that readers apply.
func (r *Repo) InitTrust(ctx context.Context, dryRun bool, trust []byte) (*Result, error) {
	files, err := initialFiles()
	if err != nil {
		return nil, err
	}
	if trust != nil {
		t, err := ParseTrust("--trust", trust)
		if err != nil {
			return nil, fail(ErrUsage, "%w", err)
		}
		if r.signer == nil || !t.Lists(r.signer.(listable)) {
			return nil, fail(ErrUsage, "--trust lists %s, but the commit that writes it would not be signed by one of them: set WARD_MANIFEST_SIGN_KEY to the private key of a key it lists", strings.Join(t.Describe(), "; "))
		}
		files[TrustFile] = trust
	}
	return r.publish(ctx, dryRun, func(c *checkout) (*Result, error) {
		res := &Result{Action: "init"}
		if c.initialized() {
			res.Status, res.Reason = StatusUnchanged, fmt.Sprintf("%s already has %s/", r.url, BaseDir)
			return res, nil
		}
		for _, name := range slices.Sorted(maps.Keys(files)) {
			if _, err := c.fs.Stat(name); err == nil {
				continue // a README of the group's own stays
			}
			if err := c.write(name, files[name]); err != nil {
				return nil, err
			}
		}
		_, err := r.commit(c, "manifest: init the layout\n\nbase/ holds the serving Deployment and Service; each hospital's folder\nunder hospitals/ pins its signed image by digest (ward deploy).\n", dryRun)
		return res, err
	})
}

// Deployment asks for an image to be deployed to a hospital.
type Deployment struct {
	Hospital string
	// Image is REPOSITORY@sha256:DIGEST; a tag is refused.
	Image string
	// Force deploys a digest that was rolled back.
	Force bool
	// DryRun makes the commit in memory, returns its diff, pushes nothing.
	DryRun bool
	// ExpectDigest is the digest the deploy replaces ("none" for a
	// hospital without a release); "" means the one live when it starts.
	// Whenever the hospital's release holds another one, after a fetch
	// too, the deploy commits nothing (ErrMoved): an update that landed in
	// between is never overwritten unseen.
	ExpectDigest string
	// AllowDowngrade deploys a model older than the live one, with a
	// Ward-Allow-Downgrade trailer in the (signed) commit.
	AllowDowngrade bool
}

// ExpectNone is Deployment.ExpectDigest for a hospital without a release.
const ExpectNone = "none"

// Deploy verifies the image, then pins it in the hospital's folder as one
// commit (message "deploy(<id>): <version>" with ward's trailers) and
// pushes it. A digest that is live already changes nothing; one that was
// rolled back is refused unless Force.
func (r *Repo) Deploy(ctx context.Context, d Deployment) (*Result, error) {
	if err := CheckHospital(d.Hospital); err != nil {
		return nil, err
	}
	ref, err := ParseImageRef(d.Image)
	if err != nil {
		return nil, err
	}
	if r.verify == nil {
		return nil, fail(ErrUsage, "no image verifier: set WARD_VERIFY_KEY to the public key the images are signed with")
	}
	img, err := r.verify(ctx, ref.String())
	if err != nil {
		return nil, fail(ErrUnverified, "%s: %w; nothing deployed", ref, err)
	}
	if img.Digest != ref.DigestStr() {
		return nil, fail(ErrUnverified, "%s: the verified image has digest %s; nothing deployed", ref, img.Digest)
	}
	if img.Hospital != d.Hospital {
		return nil, fail(ErrUnverified, "%s is the image of hospital %q, not %q; nothing deployed", ref, img.Hospital, d.Hospital)
	}
	if d.ExpectDigest != "" && d.ExpectDigest != ExpectNone && !digestPattern.MatchString(d.ExpectDigest) {
		return nil, fail(ErrUsage, "--expect-digest %q: want sha256: and 64 hex digits, or %q", d.ExpectDigest, ExpectNone)
	}
	dir := HospitalDir(d.Hospital)
	kfile, rfile := path.Join(dir, KustomizationFile), path.Join(dir, ReleaseFile)
	expect := d.ExpectDigest

	return r.publish(ctx, d.DryRun, func(c *checkout) (*Result, error) {
		res := &Result{Action: ActionDeploy, Hospital: d.Hospital}
		if !c.initialized() {
			return nil, r.notInitialized()
		}
		if _, err := r.trusted(c, d.Hospital, "deploy"); err != nil {
			return nil, err
		}
		t, err := c.timeline(d.Hospital)
		if err != nil {
			return nil, err
		}
		if t.Problem != "" {
			return nil, fail(ErrInvalid, "deploy %s: the manifest as it is: %s; fix it by hand (or git revert the commit that broke it), then deploy", d.Hospital, t.Problem)
		}
		res.Previous = t.Live
		rel := Release{Hospital: d.Hospital, Version: img.Version, Image: ref.String(), Digest: img.Digest, Metrics: img.Metrics}
		if img.Window.To != "" {
			w := img.Window
			rel.Window = &w
		}
		if t.Live != nil {
			rel.PreviousDigest = t.Live.Digest
			if t.Live.Digest == rel.Digest {
				res.Status, res.Release = StatusUnchanged, t.Live
				res.Reason = fmt.Sprintf("%s (%s) is live already", rel.Digest, t.Live.Version)
				return res, nil
			}
		}
		if err := checkExpected(&expect, t.Live, "deploy", d.Hospital, rfile); err != nil {
			return nil, err
		}
		downgrade := ""
		if t.Live != nil && CompareModels(rel.Version, rel.window(), t.Live.Version, t.Live.window()) < 0 {
			if !d.AllowDowngrade {
				return nil, DowngradeError(d.Hospital, Model{t.Live.Version, t.Live.Digest, t.Live.window()}, Model{rel.Version, rel.Digest, rel.window()}, "deploy "+d.Hospital+": nothing committed")
			}
			downgrade = t.Live.Version + " -> " + rel.Version
		}
		rej := t.rejection(rel.Digest)
		if rej != nil && !d.Force {
			return nil, fail(ErrRejected, "deploy %s: %s (%s) was rolled back by %s (%s, %s): ward deploy refuses it so that a scheduled run does not undo a rollback; pass --force to deploy it again", d.Hospital, rel.Digest, rej.Version, short(rej.Commit), rej.Author, rej.Time.UTC().Format("2006-01-02 15:04 UTC"))
		}
		kust, err := c.readFile(kfile)
		if err != nil {
			kust = newKustomization(d.Hospital)
		}
		if kust, err = pinImage(kust, rel.Repository(), rel.Digest); err != nil {
			return nil, fail(ErrInvalid, "%s: %w", kfile, err)
		}
		relData, err := renderRelease(rel)
		if err != nil {
			return nil, err
		}
		if err := c.write(kfile, kust); err != nil {
			return nil, err
		}
		if err := c.write(rfile, relData); err != nil {
			return nil, err
		}
		if _, err := r.commit(c, deployMessage(rel, rej, downgrade), d.DryRun); err != nil {
			return nil, err
		}
		res.Release = &rel
		return res, nil
	})
}
