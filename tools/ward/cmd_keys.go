package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/wardml/ward/internal/exit"
	"github.com/wardml/ward/tools/signing"
)

// keysCmd is one command line of ward keys: its flags.
type keysCmd struct {
	out   string
	force bool
}

func init() {
	register(&Command{
		Name:    "keys",
		Summary: "Make an image signing key pair (cosign format)",
		Usage:   "keys generate --out DIR [--force] [--output json]",
		Help: `Writes DIR/ward.key, an ECDSA P-256 private key, and DIR/ward.pub, its
public key. With a password (WARD_SIGNING_PASSWORD, else COSIGN_PASSWORD) the
private key is encrypted in cosign's format, so cosign sign --key reads it;
without one it is a plain PKCS#8 key (mode 0600). Give ward.key to ward
package (WARD_SIGNING_KEY) and ward.pub to deploy and the agents
(WARD_VERIFY_KEY); cosign verify --key ward.pub checks the images too.`,
		Example: "WARD_SIGNING_PASSWORD=... ward keys generate --out .ward/keys",
		Output:  true,
		New:     func() Runner { return &keysCmd{} },
	})
}

func (cmd *keysCmd) Flags(fs *flag.FlagSet) {
	fs.StringVar(&cmd.out, "out", "", "folder to write ward.key and ward.pub into")
	fs.BoolVar(&cmd.force, "force", false, "overwrite existing keys")
}

func (cmd *keysCmd) Run(_ context.Context, app *App, args []string) error {
	if len(args) != 1 || args[0] != "generate" {
		return exit.With(exit.Config, errors.New("usage: ward keys generate --out DIR"))
	}
	if cmd.out == "" {
		return exit.With(exit.Config, errors.New("--out DIR is required"))
	}
	keyFile, pubFile := filepath.Join(cmd.out, "ward.key"), filepath.Join(cmd.out, "ward.pub")
	if !cmd.force {
		for _, f := range []string{keyFile, pubFile} {
			if _, err := os.Stat(f); err == nil {
				return exit.With(exit.Config, fmt.Errorf("%s exists: pass --force to replace the key pair (images signed with it will no longer verify with the new one)", f))
			}
		}
	}
	password := signingPassword(app)
	key, err := signing.Generate()
	if err != nil {
		return err
	}
	priv, err := signing.MarshalPrivateKey(key, password)
	if err != nil {
		return err
	}
	pub, err := signing.MarshalPublicKey(&key.PublicKey)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cmd.out, 0o700); err != nil {
		return exit.With(exit.Config, err)
	}
	if err := os.WriteFile(keyFile, priv, 0o600); err != nil {
		return exit.With(exit.Config, err)
	}
	if err := os.WriteFile(pubFile, pub, 0o644); err != nil {
		return exit.With(exit.Config, err)
	}
	res := struct {
		PrivateKey  string `json:"private_key"`
		PublicKey   string `json:"public_key"`
		Encrypted   bool   `json:"encrypted"`
		Fingerprint string `json:"fingerprint"`
	}{keyFile, pubFile, password != "", signing.Fingerprint(&key.PublicKey)}
	return app.Print(res, func(w io.Writer) {
		state := "not encrypted: set WARD_SIGNING_PASSWORD to encrypt it"
		if res.Encrypted {
			state = "encrypted"
		}
		fmt.Fprintf(w, "private key %s (%s)\npublic key  %s (fingerprint %s)\n", keyFile, state, pubFile, res.Fingerprint)
	})
}

// signingPassword is the password of the signing key: WARD_SIGNING_PASSWORD,
// else cosign's COSIGN_PASSWORD.
func signingPassword(app *App) string {
	if p := app.Config.Get("signing_password"); p != "" {
		return p
	}
	return os.Getenv("COSIGN_PASSWORD")
}
