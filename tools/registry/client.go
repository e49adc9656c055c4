package registry

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/wardml/ward/internal/config"
	"github.com/wardml/ward/internal/version"
)

// Client holds how ward talks to registries. The zero options give:
// credentials from the Docker config file (DOCKER_CONFIG, else
// ~/.docker/config.json, and its credential helpers), HTTPS except to
// loopback, and retries with backoff on 408, 429, 5xx and network errors.
type Client struct {
	keychain  authn.Keychain
	insecure  bool
	transport http.RoundTripper
}

// Option configures a Client.
type Option func(*Client)

// WithCredentials makes the client log in to host with a user name and a
// password or token (WARD_REGISTRY_USERNAME, WARD_REGISTRY_PASSWORD); other
// hosts still use the Docker config file.
func WithCredentials(host, username, password string) Option {
	return func(c *Client) {
		c.keychain = authn.NewMultiKeychain(staticKeychain{host: host, auth: &authn.Basic{Username: username, Password: password}}, c.keychain)
	}
}

// WithInsecure allows plain HTTP to registries that are not on loopback
// (WARD_INSECURE_REGISTRY).
func WithInsecure(insecure bool) Option { return func(c *Client) { c.insecure = insecure } }

// WithTransport sets the transport under ward's own (benchmarks count the
// bytes sent with it).
func WithTransport(rt http.RoundTripper) Option { return func(c *Client) { c.transport = rt } }

// NewClient returns a client with the options applied.
func NewClient(opts ...Option) *Client {
	c := &Client{keychain: authn.DefaultKeychain}
	for _, o := range opts {
		o(c)
	}
	if c.transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.DialContext = (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext
		t.TLSHandshakeTimeout = 15 * time.Second
		t.ResponseHeaderTimeout = 2 * time.Minute
		c.transport = t
	}
	c.transport = httpGuard{next: c.transport, insecure: c.insecure}
	return c
}

// FromConfig returns the client that ward's settings describe.
func FromConfig(cfg *config.Config, opts ...Option) (*Client, error) {
	base := []Option{WithInsecure(cfg.InsecureRegistry())}
	if user := cfg.Get("registry_username"); user != "" {
		if cfg.Registry() == "" {
			return nil, &config.Error{Key: "registry_username", Source: cfg.Source("registry_username"), Reason: "set, but WARD_REGISTRY is not: which registry is it for?"}
		}
		ref, err := config.ParseRegistry(cfg.Registry())
		if err != nil {
			return nil, err
		}
		base = append(base, WithCredentials(ref.Host, user, cfg.Get("registry_password")))
	}
	return NewClient(append(base, opts...)...), nil
}

// Remote returns the options of go-containerregistry's remote package that
// carry this client's rules.
func (c *Client) Remote(ctx context.Context) []remote.Option {
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(c.keychain),
		remote.WithTransport(c.transport),
		remote.WithUserAgent("ward/" + version.Get().Version),
		remote.WithRetryBackoff(remote.Backoff{Duration: 500 * time.Millisecond, Factor: 2, Jitter: 0.2, Steps: 5}),
		remote.WithRetryStatusCodes(http.StatusRequestTimeout, http.StatusTooManyRequests,
			http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout),
		remote.WithJobs(4),
	}
}

func (c *Client) nameOptions() []name.Option {
	opts := []name.Option{name.StrictValidation}
	if c.insecure {
		opts = append(opts, name.Insecure)
	}
	return opts
}

// Repository returns the repository repo (a contract's image.repository)
// under the registry address addr (WARD_REGISTRY: host[:port][/prefix]).
func (c *Client) Repository(addr, repo string) (name.Repository, error) {
	if addr == "" {
		return name.Repository{}, fmt.Errorf("no registry: set WARD_REGISTRY (host[:port][/prefix]) or --registry")
	}
	ref, err := config.ParseRegistry(addr)
	if err != nil {
		return name.Repository{}, fmt.Errorf("registry %q: %w", addr, err)
	}
	full := ref.Host + "/" + strings.Trim(repo, "/")
	if ref.Prefix != "" {
		full = ref.Host + "/" + ref.Prefix + "/" + strings.Trim(repo, "/")
	}
	r, err := name.NewRepository(full, c.nameOptions()...)
	if err != nil {
		return name.Repository{}, fmt.Errorf("repository %q: %w", full, err)
	}
	return r, nil
}

// ParseDigest reads an image reference pinned by digest,
// HOST/REPO@sha256:HEX. A reference by tag is refused: deploys, the agent
// and verify act on digests only, so that what was checked is what runs.
func (c *Client) ParseDigest(s string) (name.Digest, error) {
	if !strings.Contains(s, "@") {
		return name.Digest{}, fmt.Errorf("image %q is not pinned by digest: want REPO@sha256:DIGEST (ward package prints it)", s)
	}
	d, err := name.NewDigest(s, c.nameOptions()...)
	if err != nil {
		return name.Digest{}, fmt.Errorf("image %q: %w", s, err)
	}
	return d, nil
}

// staticKeychain answers one host with fixed credentials.
type staticKeychain struct {
	host string
	auth authn.Authenticator
}

func (k staticKeychain) Resolve(r authn.Resource) (authn.Authenticator, error) {
	if r.RegistryStr() == k.host {
		return k.auth, nil
	}
	return authn.Anonymous, nil
}

// httpGuard refuses plain HTTP to a registry off loopback unless it was
// allowed: go-containerregistry itself falls back to HTTP for private
// (RFC 1918) addresses, which would send credentials and images in clear.
type httpGuard struct {
	next     http.RoundTripper
	insecure bool
}

func (g httpGuard) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Scheme == "http" && !g.insecure && !config.IsLoopback(r.URL.Host) {
		return nil, fmt.Errorf("plain HTTP to %s refused: it is not on loopback; use HTTPS, or set WARD_INSECURE_REGISTRY=true if you accept it", r.URL.Host)
	}
	return g.next.RoundTrip(r)
}
