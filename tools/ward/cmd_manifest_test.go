package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/internal/testenv"
	"github.com/wardml/ward/tools/image"
	"github.com/wardml/ward/tools/manifest"
	"github.com/wardml/ward/tools/registry"
	"github.com/wardml/ward/tools/signing"
)

// ward runs the CLI in-process against the manifest repo remote, with the
// registry and verification key of env.
func ward(t *testing.T, remote string, env []string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	env = append([]string{"WARD_MANIFEST_REPO=" + remote, "WARD_LOG_FORMAT=json", "WARD_LOG_LEVEL=error"}, env...)
	if args[0] != "history" {
		args = append(args, "--author", "Ward CI <ci@ward.invalid>")
	}
	code := run(context.Background(), args, &out, &errOut, env)
	return code, out.String(), errOut.String()
}

// images are st-olaf images of ward package in an in-process registry: v1
// and v2 signed with the key of WARD_VERIFY_KEY, one unsigned, and one
// signed by another key.
type images struct {
	env                              []string
	v1, v2, v3, unsigned, otherKeyed manifest.Image
}

func publishImages(t *testing.T) images {
	t.Helper()
	reg, err := registry.Start(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	key, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	other, err := signing.Generate()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := signing.MarshalPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubFile := filepath.Join(t.TempDir(), "ward.pub")
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		t.Fatal(err)
	}
	client := registry.NewClient()
	repo, err := client.Repository(reg.Host, "ward/st-olaf")
	if err != nil {
		t.Fatal(err)
	}
	srv := builtServer(t)
	publish := func(version string, signer *ecdsa.PrivateKey) manifest.Image {
		m := image.Model{Hospital: "st-olaf", Version: version, Family: "ridge", Metrics: map[string]float64{"mae": 900}, Artifact: []byte(`{"version":"` + version + `"}`)}
		img, err := image.Build(m, srv, image.Created(time.Unix(1700000000, 0)))
		if err != nil {
			t.Fatal(err)
		}
		opts := []image.PublishOption{image.WithRemote(client.Remote(context.Background())...)}
		if signer != nil {
			opts = append(opts, image.WithSigner(signer))
		}
		res, err := image.NewPublisher(opts...).Publish(context.Background(), repo, img, nil)
		if err != nil {
			t.Fatal(err)
		}
		return manifest.Image{Ref: res.Ref.Context().Name() + "@" + res.Ref.DigestStr(), Digest: res.Ref.DigestStr(), Hospital: "st-olaf", Version: version}
	}
	return images{
		env:        []string{"WARD_REGISTRY=" + reg.Host, "WARD_VERIFY_KEY=" + pubFile},
		v1:         publish("v1", key),
		v2:         publish("v2", key),
		v3:         publish("v3", key),
		unsigned:   publish("v3-unsigned", nil),
		otherKeyed: publish("v4-other", other),
	}
}

func TestDeployRollbackHistoryCommands(t *testing.T) {
	remote := testenv.BareRepo(t)
	imgs := publishImages(t)
	v1, v2, env := imgs.v1, imgs.v2, imgs.env

	code, out, errOut := ward(t, remote, env, "manifest", "init")
	if code != exit.OK || !strings.Contains(out, "init: 1 commit(s); pushed") {
		t.Fatalf("manifest init: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", "registry.test/ward/st-olaf:v1")
	if code != exit.Config || !strings.Contains(errOut, "reference by tag") {
		t.Fatalf("deploy by tag: %d %s", code, errOut)
	}
	code, _, errOut = ward(t, remote, []string{"WARD_REGISTRY=" + strings.Split(v1.Ref, "/")[0]}, "deploy", "--hospital", "st-olaf", "--image", v1.Ref)
	if code != exit.Config || !strings.Contains(errOut, "no public key") {
		t.Fatalf("deploy without a verification key: %d %s", code, errOut)
	}
	code, _, errOut = ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", imgs.unsigned.Ref)
	if code != exit.Failure || !strings.Contains(errOut, "not signed") {
		t.Fatalf("unsigned deploy: %d %s", code, errOut)
	}
	code, _, errOut = ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", imgs.otherKeyed.Ref)
	if code != exit.Failure || !strings.Contains(errOut, "not signed by this key") {
		t.Fatalf("deploy signed by another key: %d %s", code, errOut)
	}
	for _, img := range []manifest.Image{v1, v2} {
		code, out, errOut = ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", img.Ref)
		if code != exit.OK || !strings.Contains(out, "deploy st-olaf: ") || !strings.Contains(out, img.Version+" ("+img.Ref+"); pushed") {
			t.Fatalf("deploy %s: %d\n%s%s", img.Version, code, out, errOut)
		}
	}
	code, out, _ = ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", v2.Ref)
	if code != exit.OK || !strings.Contains(out, "nothing to do: "+v2.Digest+" (v2) is live already") {
		t.Fatalf("deploy of the live digest: %d %s", code, out)
	}
	code, out, _ = ward(t, remote, env, "rollback", "--hospital", "st-olaf", "--dry-run")
	t.Logf("ward rollback --hospital st-olaf --dry-run:\n%s", out)
	if code != exit.OK || !strings.Contains(out, "-version: v2") || !strings.Contains(out, "dry run: v2 ("+v2.Ref+") -> v1") {
		t.Fatalf("rollback --dry-run: %d %s", code, out)
	}
	code, out, errOut = ward(t, remote, env, "rollback", "--hospital", "st-olaf")
	if code != exit.OK || !strings.Contains(out, "rollback st-olaf: v2 ("+v2.Ref+") -> v1 ("+v1.Ref+"); pushed") {
		t.Fatalf("rollback: %d\n%s%s", code, out, errOut)
	}
	code, _, errOut = ward(t, remote, env, "deploy", "--hospital", "st-olaf", "--image", v2.Ref)
	if code != exit.Failure || !strings.Contains(errOut, "was rolled back by") || !strings.Contains(errOut, "--force") {
		t.Fatalf("deploy of the rolled-back digest: %d %s", code, errOut)
	}

	code, out, _ = ward(t, remote, env, "history", "--hospital", "st-olaf")
	t.Logf("ward history --hospital st-olaf:\n%s", out)
	for _, want := range []string{"st-olaf: live v1 (" + v1.Ref + ")", "rejected: v2 (" + v2.Digest + ")", "ACTION", "rollback", "reverts ", "reverted by ", "mae=900"} {
		if code != exit.OK || !strings.Contains(out, want) {
			t.Errorf("history lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = ward(t, remote, env, "history", "--hospital", "st-olaf", "--output", "json")
	var tl manifest.Timeline
	if err := json.Unmarshal([]byte(out), &tl); code != exit.OK || err != nil {
		t.Fatalf("history --output json: %d %v\n%s", code, err, out)
	}
	if len(tl.Events) != 3 || tl.Events[0].Action != manifest.ActionRollback || tl.Events[0].Reverts != tl.Events[1].Commit ||
		!tl.Events[1].Rejected || tl.Live.Version != "v1" || len(tl.Rejected) != 1 || tl.Rejected[0].Digest != v2.Digest {
		t.Fatalf("history json:\n%s", out)
	}

	code, _, errOut = ward(t, testenv.BareRepo(t), env, "rollback", "--hospital", "st-olaf")
	if code != exit.Failure || !strings.Contains(errOut, "nothing to roll back") {
		t.Fatalf("rollback on an empty repo: %d %s", code, errOut)
	}
	code, _, errOut = ward(t, "", nil, "history", "--hospital", "st-olaf")
	if code != exit.Config || !strings.Contains(errOut, "WARD_MANIFEST_REPO") {
		t.Fatalf("no manifest repo: %d %s", code, errOut)
	}
}

// ward deploy --images takes what ward package --output json wrote: each
// image deploys, a hospital that was not packaged is skipped, and with
// --skip-rejected a rolled-back digest is reported instead of failing.
func TestDeployImagesOfPackage(t *testing.T) {
	remote := testenv.BareRepo(t)
	imgs := publishImages(t)
	env := imgs.env
	if code, out, errOut := ward(t, remote, env, "manifest", "init"); code != exit.OK {
		t.Fatalf("init: %d %s%s", code, out, errOut)
	}
	file := filepath.Join(t.TempDir(), "images.json")
	write := func(img manifest.Image) {
		b, _ := json.Marshal([]map[string]string{{"hospital": "st-olaf", "image": img.Ref}, {"hospital": "riverside", "skipped": "the model failed its gate"}})
		os.WriteFile(file, b, 0o644)
	}
	write(imgs.v1)
	code, out, errOut := ward(t, remote, env, "deploy", "--images", file)
	if code != exit.OK || !strings.Contains(out, "deploy st-olaf: nothing -> v1") || !strings.Contains(out, "deploy riverside: skipped: not packaged") {
		t.Fatalf("deploy --images: %d\n%s%s", code, out, errOut)
	}
	write(imgs.v2)
	if code, out, errOut := ward(t, remote, env, "deploy", "--images", file); code != exit.OK || !strings.Contains(out, "v1 ("+imgs.v1.Ref+") -> v2") {
		t.Fatalf("deploy --images v2: %d\n%s%s", code, out, errOut)
	}
	if code, out, errOut := ward(t, remote, env, "rollback", "--hospital", "st-olaf"); code != exit.OK {
		t.Fatalf("rollback: %d\n%s%s", code, out, errOut)
	}
	if code, _, errOut := ward(t, remote, env, "deploy", "--images", file); code != exit.Failure || !strings.Contains(errOut, "1 of 2 images failed to deploy") {
		t.Fatalf("deploy --images of a rolled-back digest: %d %s", code, errOut)
	}
	code, out, errOut = ward(t, remote, env, "deploy", "--images", file, "--skip-rejected")
	if code != exit.OK || !strings.Contains(out, "deploy st-olaf: skipped: ") || !strings.Contains(out, "--force") {
		t.Fatalf("deploy --images --skip-rejected: %d\n%s%s", code, out, errOut)
	}
	if code, out, _ := ward(t, remote, nil, "history", "--hospital", "st-olaf"); code != exit.OK || !strings.Contains(out, "live v1") {
		t.Fatalf("after the skipped deploy, history: %d\n%s", code, out)
	}
}
