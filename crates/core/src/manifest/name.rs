//! The grammar of file names inside a manifest.
//!
//! A manifest names files by relative path, and every node turns those names into paths
//! under its data dir, so a name must not be able to leave that dir or mean different
//! things on different systems. Names are checked when a manifest is built and again when
//! one is received.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The maximum length of a whole file name, in bytes.
pub const FILE_NAME_MAX_LEN: usize = 1024;
/// The maximum length of one path component, in bytes.
pub const COMPONENT_MAX_LEN: usize = 255;

/// A validated relative file name such as `bin/patch.msi`.
///
/// Rules: components separated by `/`; no empty component (so no leading or trailing `/`
/// and no `//`); no `.` or `..` component; no backslash, `:` (drive letters, alternate
/// data streams), NUL or other control character, or any of `< > " | ? *`; no component
/// ending in a space or a dot; no Windows reserved device name (`CON`, `PRN`, `AUX`, `NUL`,
/// `COM0`-`COM9`, `LPT0`-`LPT9`, with or without an extension, in any case).
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileName(String);

/// A file name that breaks the grammar.
#[derive(Debug, thiserror::Error)]
#[error("invalid file name {name:?}: {reason}; use a relative path of plain components separated by '/'")]
pub struct InvalidFileName {
    /// The rejected name.
    pub name: String,
    /// Which rule it breaks.
    pub reason: &'static str,
}

impl FileName {
    /// Validates `name` against the grammar.
    pub fn new(name: impl Into<String>) -> Result<Self, InvalidFileName> {
        let name = name.into();
        match check(&name) {
            Ok(()) => Ok(FileName(name)),
            Err(reason) => Err(InvalidFileName { name, reason }),
        }
    }

    /// The name as text, components separated by `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The components, in order.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// A key under which two names collide on a case-insensitive file system.
    pub fn fold_case(&self) -> String {
        self.0.to_lowercase()
    }
}

fn check(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > FILE_NAME_MAX_LEN {
        return Err("longer than 1024 bytes");
    }
    if name.starts_with('/') {
        return Err("absolute path");
    }
    for character in name.chars() {
        if character.is_control() {
            return Err("contains a control character");
        }
        match character {
            '\\' => return Err("contains a backslash"),
            ':' => return Err("contains ':' (drive letter or stream name)"),
            '<' | '>' | '"' | '|' | '?' | '*' => return Err("contains a character Windows forbids"),
            _ => {}
        }
    }
    for component in name.split('/') {
        check_component(component)?;
    }
    Ok(())
}

fn check_component(component: &str) -> Result<(), &'static str> {
    if component.is_empty() {
        return Err("empty path component");
    }
    if component == "." || component == ".." {
        return Err("'.' or '..' component");
    }
    if component.len() > COMPONENT_MAX_LEN {
        return Err("path component longer than 255 bytes");
    }
    if component.ends_with(' ') || component.ends_with('.') {
        return Err("path component ends with a space or a dot");
    }
    let stem = component.split('.').next().unwrap_or(component).to_ascii_uppercase();
    let reserved = matches!(stem.as_str(), "CON" | "PRN" | "AUX" | "NUL")
        || (stem.len() == 4
            && (stem.starts_with("COM") || stem.starts_with("LPT"))
            && stem.as_bytes()[3].is_ascii_digit());
    if reserved {
        return Err("Windows reserved device name");
    }
    Ok(())
}

impl TryFrom<String> for FileName {
    type Error = InvalidFileName;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        FileName::new(name)
    }
}

impl From<FileName> for String {
    fn from(name: FileName) -> String {
        name.0
    }
}

impl fmt::Display for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileName({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_table() {
        let long_component = "a".repeat(COMPONENT_MAX_LEN + 1);
        let cases: &[(&str, bool)] = &[
            ("patch.msi", true),
            ("bin/patch.msi", true),
            ("a b/c-d_e+f~g.tar.gz", true),
            ("ünïcode.txt", true),
            ("console.txt", true),
            ("COM10", true),
            ("", false),
            ("/etc/passwd", false),
            ("../escape", false),
            ("a/../../escape", false),
            ("a/./b", false),
            ("a//b", false),
            ("a/", false),
            ("a\\b", false),
            ("C:evil", false),
            ("c:/windows", false),
            ("nul\0byte", false),
            ("new\nline", false),
            ("CON", false),
            ("con.txt", false),
            ("dir/LPT1.log", false),
            ("COM9", false),
            ("trailing.", false),
            ("trailing ", false),
            ("what?", false),
            (&long_component, false),
        ];
        for (name, valid) in cases {
            assert_eq!(FileName::new(*name).is_ok(), *valid, "file name {name:?}");
        }
    }

    #[test]
    fn error_names_value() {
        let error = FileName::new("../x").expect_err("dotdot");
        assert!(error.to_string().contains("\"../x\""), "{error}");
    }
}
