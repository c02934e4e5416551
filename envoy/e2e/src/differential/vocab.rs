//! The shared vocabularies: policies and requests draw their values from the same small
//! lists, so that most requests meet most rules (a differential test that only sees
//! default-deny proves little).

/// The mesh's trust domain.
pub const TRUST_DOMAIN: &str = "cluster.local";

/// Trust domains used as aliases (some policy sets alias them to `cluster.local`).
pub const ALIASES: &[&str] = &["td2.example", "old.example"];

/// The client certificates: a file stem, and the URI SAN it carries (`None`: a DNS SAN
/// only, no URI).
pub const CLIENTS: &[(&str, Option<&str>)] = &[
    (
        "frontend",
        Some("spiffe://cluster.local/ns/shop/sa/frontend"),
    ),
    (
        "order-engine",
        Some("spiffe://cluster.local/ns/shop/sa/order-engine"),
    ),
    (
        "billing",
        Some("spiffe://cluster.local/ns/finance/sa/billing"),
    ),
    (
        "finance-default",
        Some("spiffe://cluster.local/ns/finance/sa/default"),
    ),
    (
        "ingress",
        Some("spiffe://cluster.local/ns/istio-system/sa/ingress"),
    ),
    (
        "alias-frontend",
        Some("spiffe://td2.example/ns/shop/sa/frontend"),
    ),
    (
        "alias-billing",
        Some("spiffe://old.example/ns/finance/sa/billing"),
    ),
    (
        "foreign",
        Some("spiffe://evil.example/ns/shop/sa/order-engine"),
    ),
    (
        "extra-segments",
        Some("spiffe://cluster.local/ns/shop/sa/frontend/x/y"),
    ),
    (
        "shop-dev",
        Some("spiffe://cluster.local/ns/shop-dev/sa/frontend"),
    ),
    (
        "nested",
        Some("spiffe://cluster.local/ns/a/sa/b/ns/shop/sa/frontend"),
    ),
    (
        "not-spiffe",
        Some("https://cluster.local/ns/shop/sa/frontend"),
    ),
    ("no-uri", None),
    // `/ns/` overlapping itself: istiod's `.*/ns/<ns>/.*` reads both `ns` and `shop` here.
    (
        "overlapping-ns",
        Some("spiffe://cluster.local/ns/ns/shop/sa/frontend"),
    ),
];

/// Server names the client sends (`None`: no SNI, the client connects by IP address).
pub const SNIS: &[Option<&str>] = &[
    None,
    Some("localhost"),
    Some("billing.finance.svc.cluster.local"),
    Some("api.example.com"),
];

/// Principals as policies write them (no `spiffe://`).
pub const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/shop/sa/frontend",
    "cluster.local/ns/shop/sa/order-engine",
    "cluster.local/ns/finance/sa/billing",
    "cluster.local/ns/finance/sa/default",
    "cluster.local/ns/istio-system/sa/ingress",
    "td2.example/ns/shop/sa/frontend",
    "old.example/ns/finance/sa/billing",
    "evil.example/ns/shop/sa/order-engine",
    "cluster.local/ns/shop/sa/frontend/x/y",
    "cluster.local/ns/shop-dev/sa/frontend",
    "cluster.local/ns/a/sa/b/ns/shop/sa/frontend",
    "cluster.local/ns/ns/shop/sa/frontend",
];

/// Namespaces.
pub const NAMESPACES: &[&str] = &["shop", "finance", "istio-system", "shop-dev", "a", "ns"];

/// Namespace values with a `*` inside (Istio: a regex; cordon: refused).
pub const ODD_NAMESPACES: &[&str] = &["sh*p", "*ho*", "s*-dev"];

/// `serviceAccounts` values: `namespace/name` and the short form.
pub const SERVICE_ACCOUNTS: &[&str] = &[
    "shop/frontend",
    "frontend",
    "shop/order-engine",
    "finance/billing",
    "billing",
    "default",
    "shop-dev/frontend",
    "istio-system/ingress",
    "a/b",
];

/// Trust domains.
pub const TRUST_DOMAINS: &[&str] = &[
    "cluster.local",
    "td2.example",
    "old.example",
    "evil.example",
];

/// JWT issuers `jwt_authn` accepts (one provider each, as two RequestAuthentication
/// rules make).
pub const ISSUERS: &[&str] = &["https://idp.shop.example", "https://other.example"];

/// Token subjects.
pub const SUBJECTS: &[&str] = &["alice", "bob", "svc/ops"];

/// `requestPrincipals` and `request.auth.principal` values (`iss/sub`).
pub const REQUEST_PRINCIPALS: &[&str] = &[
    "https://idp.shop.example/alice",
    "https://idp.shop.example/bob",
    "https://other.example/alice",
    "https://other.example/svc/ops",
    "https://idp.shop.example/svc/ops",
];

/// Audiences.
pub const AUDIENCES: &[&str] = &["billing", "web", "mobile"];

/// Presenters (`azp`).
pub const PRESENTERS: &[&str] = &["web", "mobile"];

/// Claim names policies test (`request.auth.claims[...]`; nested ones as a path).
pub const CLAIM_KEYS: &[&[&str]] = &[
    &["scope"],
    &["scp"],
    &["permission"],
    &["groups"],
    &["role"],
    &["admin"],
    &["level"],
    &["email"],
    &["nested", "role"],
    &["nested", "level"],
    &["aud"],
    &["sub"],
    &["iss"],
    &["missing"],
    &["note"],
    &["tenant"],
    &["roles"],
];

/// Claim values (policies and tokens).
pub const CLAIM_VALUES: &[&str] = &[
    "read",
    "write",
    "admin",
    "read write",
    "dev",
    "ops",
    "true",
    "false",
    "1",
    "42",
    "1.5",
    "alice",
    "billing",
    "web",
    "alice@example.com",
];

/// IP addresses and CIDRs (`ipBlocks`, `source.ip`, `destination.ip`, ...).
pub const IPS: &[&str] = &[
    "127.0.0.1",
    "127.0.0.0/8",
    "127.0.0.2",
    "127.0.0.1/32",
    "10.0.0.0/8",
    "0.0.0.0/0",
    "::1",
    "::1/128",
    "::/0",
    "fe80::/10",
    "::ffff:127.0.0.1",
    "::ffff:127.0.0.0/104",
    "10.1.2.3",
    "2001:db8::/32",
];

/// `x-forwarded-for` values requests send (what a client may claim about its address).
pub const FORWARDED_FOR: &[&str] = &[
    "10.1.2.3",
    "127.0.0.2",
    "2001:db8::7",
    "10.1.2.3, 127.0.0.2",
    "garbage",
];

/// Hosts as policies write them.
pub const POLICY_HOSTS: &[&str] = &[
    "billing",
    "billing:8080",
    "billing.finance.svc.cluster.local",
    "Billing.Finance.svc.cluster.local",
    "api.example.com",
    "api.example.com:443",
    "localhost",
    "*.example.com",
    "billing.*",
    "billing:*",
];

/// `Host` header values requests send.
pub const REQUEST_HOSTS: &[&str] = &[
    "billing",
    "billing:8080",
    "Billing",
    "billing.finance.svc.cluster.local",
    "BILLING.finance.svc.cluster.local:8080",
    "api.example.com",
    "API.Example.com:443",
    "localhost",
    "other.test",
    "billing.",
    "[::1]:8080",
];

/// Methods (policies and requests).
pub const METHODS: &[&str] = &[
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "get",
];

/// Paths as policies write them (exact, prefix, suffix, `{*}` and `{**}` templates).
pub const POLICY_PATHS: &[&str] = &[
    "/api/v1/users",
    "/api/v1/users/42",
    "/admin",
    "/admin/settings",
    "/Admin",
    "/api/v1/*",
    "/admin*",
    "*/settings",
    "*.json",
    "/api/{*}/users",
    "/api/{**}",
    "/{*}/v1/{*}/42",
    "/public/a%2Fb",
    "/api//v1/users",
    "/report.json",
];

/// Paths Istio accepts and cordon documents as errors (`{**}` before the last segment,
/// `*` inside a value): rare, since a set cordon refuses is not run.
pub const ODD_POLICY_PATHS: &[&str] = &["/api/{**}/42", "/{**}/settings", "/api/*/users"];

/// Request targets (dot segments, double slashes, percent-escapes, queries).
pub const REQUEST_PATHS: &[&str] = &[
    "/api/v1/users",
    "/api/v1/users/42",
    "/api/v2/users",
    "/api/v1/users/42/",
    "/admin",
    "/admin/settings",
    "/Admin",
    "/admin?debug=true",
    "/api/v1/users?x=1&y=2",
    "//admin",
    "/api//v1/users",
    "/public/../admin",
    "/api/./v1/users",
    "/api/v1/../v1/users/42",
    "/api/v1/users%2F42",
    "/api%2fv1/users",
    "/%61dmin",
    "/admin%2Fsettings",
    "/public/a%2Fb",
    "/public/..%2Fadmin",
    "/report.json",
    "/a/b/c/v1/x/42",
    "/admin#fragment",
    "/admin;jsessionid=1",
    "/public/..;/admin",
    "/public/%2e%2e/admin",
    "/public/..%5Cadmin",
    "/admin/",
    "/api/v1/users?x=1#f",
    "/",
];

/// Header names whose values are the request's own method, path or host.
pub const PSEUDO_HEADERS: &[&str] = &[":path", ":authority", ":method", "host"];

/// Request header names rules test, and the values requests send.
pub const HEADER_NAMES: &[&str] = &["x-env", "x-user", "x-tenant"];

/// Header values (some holding commas).
pub const HEADER_VALUES: &[&str] = &[
    "prod",
    "staging",
    "dev",
    "prod,staging",
    "staging, prod",
    "alice",
    "bob",
    "alice,bob",
    "a",
    "",
];

/// Plain words the value forms (prefix `x*`, suffix `*x`) are cut from, per attribute.
pub const SNI_NAMES: &[&str] = &[
    "localhost",
    "billing.finance.svc.cluster.local",
    "api.example.com",
];

/// The workload every policy set protects.
pub const WORKLOAD_NAMESPACE: &str = "finance";

/// Its labels.
pub const WORKLOAD_LABELS: &[(&str, &str)] = &[("app", "billing"), ("version", "v1")];

/// Root namespaces a policy set may use.
pub const ROOT_NAMESPACES: &[&str] = &["istio-system", "mesh-root"];

/// Istio's path normalization modes.
pub const PATH_NORMALIZATIONS: &[&str] =
    &["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"];
