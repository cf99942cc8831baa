//! Nothing: the end-to-end tests are the `[[test]]` targets of this package (see Cargo.toml),
//! with what they share in `support/`.
