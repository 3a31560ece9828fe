//! The sanitizer crate's integration tests, one binary (link time and disk: one binary instead
//! of one per file). Each module is one format or concern; `common` holds the fail-closed
//! compliance helpers, `csv_oracle` an independent CSV splitter; fixtures come from the
//! `mukaika-fixtures` crate.

mod common;
mod csv_oracle;

mod archives;
mod audio;
mod corpus;
mod deadline;
mod external_tools;
mod images;
mod mail;
mod mail_corpus;
mod mail_trust;
mod odf;
mod ole;
mod ooxml;
mod pdf;
mod registry;
mod rtf;
mod text;
mod tnef;
mod unlock;
mod xml_and_shell;
