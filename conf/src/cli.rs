//! The library side of `weir conf get KEY` and `weir conf dump`, so that
//! the binary only wires arguments to these functions.

use crate::config::is_declared;
use crate::{suggest, Config, ConfError};

/// The output formats of `weir conf dump`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DumpFormat {
    /// Aligned columns KEY, VALUE, SOURCE.
    Table,
    /// A Hadoop configuration file that loads back to the same values.
    Xml,
}

/// What `weir conf get KEY` prints: the expanded value. Unlike the typed
/// getters it also answers for keys no default file declares (a user's own
/// variable in a site file). Errors: [`ConfError::Unset`] ("KEY is not
/// set"), [`ConfError::UnknownKey`] (not set and not declared, with a
/// suggestion) and expansion errors; the binary prints them and exits 1.
pub fn conf_get(config: &Config, key: &str) -> Result<String, ConfError> {
    match config.get_unchecked(key)? {
        Some(value) => Ok(value),
        None if is_declared(key) => Err(ConfError::Unset { key: key.to_owned() }),
        None => Err(ConfError::UnknownKey {
            key: key.to_owned(),
            suggestion: suggest::closest(key, crate::declared_keys()),
        }),
    }
}

/// What `weir conf dump --format FORMAT` prints.
pub fn conf_dump(config: &Config, format: DumpFormat) -> String {
    match format {
        DumpFormat::Table => config.dump_table(),
        DumpFormat::Xml => config.dump_xml(),
    }
}
