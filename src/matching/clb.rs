//! CLB's own layer-7 matching (clb-api.md §7.2-§7.6, nginx-compatible where CLB is silent).
//! PLACEHOLDER interface: the full implementation replaces the body of `CompiledListener::route`.

/// One domain of a listener: its rules in creation order. Domains are given in creation order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainConf {
    /// The CLB domain string: exact (`www.a.com`), wildcard (`*.a.com`, `www.a.*`) or regex (`~^...$`).
    pub domain: String,
    /// Whether this domain is the listener's DefaultServer.
    pub default_server: bool,
    /// The URL rules of the domain, in creation order.
    pub rules: Vec<UrlConf>,
}

/// One URL rule: `=/exact`, `^~/prefix`, `~regex`, `~*regex` or a plain prefix `/prefix`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlConf {
    pub url: String,
}

/// Where CLB sends a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClbRoute {
    /// The rule `rules[rule]` of `domains[domain]`.
    Rule { domain: usize, rule: usize },
    /// The trailing-slash 301 redirect to `location` (path plus the original query string).
    Redirect { location: String },
    /// No domain or no URL matched: 404.
    NotFound,
}

/// A listener's domains, pre-compiled for routing many requests.
#[derive(Debug, Clone)]
pub struct CompiledListener {
    domains: Vec<DomainConf>,
}

impl CompiledListener {
    pub fn new(domains: Vec<DomainConf>) -> Self {
        Self { domains }
    }

    pub fn domains(&self) -> &[DomainConf] {
        &self.domains
    }

    /// Route a request by its `Host` header and request target (`/path?query`).
    pub fn route(&self, _host: &str, _path_and_query: &str) -> ClbRoute {
        ClbRoute::NotFound
    }
}
