//! Query strings of the API (`form-urlencoded`, `+` for space), shared by
//! the server's `/v1/flows` and the `bulkhead flows` client.

/// The decoded `key=value` pairs of a query string, in order.
pub fn query_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Encodes `pairs` as a query string (form-urlencoded, `+` for space).
pub fn encode_query<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}
