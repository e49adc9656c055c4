package registry

import (
	"context"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"oras.land/oras-go/v2/registry/remote"
	"oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/retry"

	"github.com/wardml/ward/internal/version"
)

// ORAS returns an oras-go client of repo with this client's rules (the
// same credentials, transport and plain-HTTP guard as Remote). ward attaches
// referrers through it: oras-go finds out whether the registry has the
// referrers API (the OCI-Subject answer to a push, else a probe) and, where
// it has none, maintains the sha256-<hex> fallback index, merging the
// changes of concurrent pushes of this process into one update. Keep one
// per repository for a run, so that it asks the registry once.
func (c *Client) ORAS(repo name.Repository) (*remote.Repository, error) {
	r, err := remote.NewRepository(repo.Name())
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", repo, err)
	}
	r.PlainHTTP = repo.Scheme() == "http"
	// A registry without delete (docker-registry's default) cannot drop the
	// replaced fallback index; an unreferenced index is harmless, a failed
	// attach is not.
	r.SkipReferrersGC = true
	r.Client = &auth.Client{
		Client: &http.Client{Transport: retry.NewTransport(c.transport)},
		Header: http.Header{"User-Agent": {"ward/" + version.Get().Version}},
		Cache:  auth.NewCache(),
		Credential: func(ctx context.Context, hostport string) (auth.Credential, error) {
			reg, err := name.NewRegistry(hostport, name.WeakValidation)
			if err != nil {
				return auth.EmptyCredential, err
			}
			a, err := c.keychain.Resolve(reg)
			if err != nil {
				return auth.EmptyCredential, fmt.Errorf("credentials for %s: %w", hostport, err)
			}
			if a == authn.Anonymous {
				return auth.EmptyCredential, nil
			}
			cfg, err := authn.Authorization(ctx, a)
			if err != nil {
				return auth.EmptyCredential, fmt.Errorf("credentials for %s: %w", hostport, err)
			}
			return auth.Credential{Username: cfg.Username, Password: cfg.Password, RefreshToken: cfg.IdentityToken, AccessToken: cfg.RegistryToken}, nil
		},
	}
	return r, nil
}
