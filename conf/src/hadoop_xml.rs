//! Reader for Hadoop's configuration file format (`core-site.xml`,
//! `yarn-site.xml`, Weir's own `*-default.xml` and `*-site.xml`).
//!
//! A file is a `<configuration>` element holding `<property>` elements, each
//! with a `<name>`, a `<value>`, optionally `<final>true</final>`, and any
//! number of `<description>`, `<source>` and `<tag>` elements, which are
//! read and ignored. `<xi:include href="..."/>` (XInclude namespace) inserts
//! the properties of another file at that point; its `<xi:fallback>` is used
//! when the file cannot be read.
//!
//! Parsing is done in two passes: the syntax of one file is turned into a
//! list of [`Item`]s, then includes are resolved. This keeps the fallback
//! lazy: includes inside an unused fallback are never read.
//!
//! Invariants the reader keeps, whatever the input:
//! - it never panics, and every error names the file and a line;
//! - nothing is expanded from a DOCTYPE (DOCTYPEs are refused outright, and
//!   only the five predefined entities and character references exist), so
//!   "billion laughs" documents cannot make it allocate;
//! - a file is at most [`MAX_FILE_BYTES`], a name or value at most
//!   [`MAX_VALUE_BYTES`], includes nest at most [`MAX_INCLUDE_DEPTH`] deep
//!   and one top-level parse reads at most [`MAX_TOTAL_BYTES`] in all files;
//! - only UTF-8 is accepted (a UTF-8 byte order mark is allowed, as XML
//!   allows it).
//!
//! Decisions where Hadoop is lenient and Weir is not (a configuration error
//! should stop a daemon, not be silently ignored): a `<property>` without
//! `<name>` or without `<value>`, an unknown element, text outside elements,
//! and a `<final>` that is neither `true` nor `false` are errors.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use crate::ConfError;

/// Largest configuration file accepted, included files counted one by one.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Largest property name or value, in bytes (before expansion).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;
/// How deep `xi:include`s may nest (a file that includes a file that
/// includes a file is depth 2).
pub const MAX_INCLUDE_DEPTH: usize = 8;
/// Most bytes one call reads across a file and everything it includes, so
/// that a file including the same file many times cannot blow up.
pub const MAX_TOTAL_BYTES: usize = 64 * 1024 * 1024;

const XINCLUDE_NS: &[u8] = b"http://www.w3.org/2001/XInclude";

/// One `<property>` as written in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Property {
    pub name: String,
    /// The text of `<value>`, entities and CDATA resolved, not trimmed and
    /// not expanded (`${...}` is left as written).
    pub value: String,
    /// `<final>true</final>`.
    pub is_final: bool,
    /// The file the property is written in (an included file for included
    /// properties).
    pub file: PathBuf,
    /// The line of the `<value>` element, 1-based.
    pub line: u64,
}

/// Reads the files that `xi:include` names. Implementations must not read
/// more than [`MAX_FILE_BYTES`] + 1 bytes of a file.
pub trait IncludeReader {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>>;
}

/// Reads includes from the file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsIncludes;

impl IncludeReader for FsIncludes {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        read_bounded(path)
    }
}

/// Refuses every include as "not found" (so fallbacks apply): for embedded
/// files and fuzzing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoIncludes;

impl IncludeReader for NoIncludes {
    fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("includes are disabled here ({})", path.display()),
        ))
    }
}

/// Reads at most `MAX_FILE_BYTES + 1` bytes, so that the size check can
/// tell "exactly at the limit" from "over it" without reading a huge (or
/// endless, like `/dev/zero`) file whole.
pub(crate) fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES as u64 + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Parses a Hadoop configuration file, following its includes on the file
/// system. This is the function the YARN shim uses to read Hadoop's own
/// `core-site.xml`, `hdfs-site.xml` and `yarn-site.xml`.
pub fn parse_hadoop_file(path: &Path) -> Result<Vec<Property>, ConfError> {
    let bytes = read_bounded(path).map_err(|source| ConfError::Io { file: path.to_owned(), source })?;
    parse_hadoop_bytes(&bytes, path, &FsIncludes)
}

/// Parses the bytes of a Hadoop configuration file. `file` names it in
/// errors and is the base for relative `href`s; `includes` reads them.
pub fn parse_hadoop_bytes(
    bytes: &[u8],
    file: &Path,
    includes: &dyn IncludeReader,
) -> Result<Vec<Property>, ConfError> {
    let mut resolver = Resolver { includes, total_bytes: 0, stack: vec![normalize(file)] };
    let mut out = Vec::new();
    resolver.document(bytes, file, &mut out)?;
    Ok(out)
}

/// A top-level piece of a configuration file.
#[derive(Debug)]
enum Item {
    Property(Property),
    Include { href: String, line: u64, fallback: Option<Vec<Item>> },
}

struct Resolver<'a> {
    includes: &'a dyn IncludeReader,
    total_bytes: usize,
    /// The files being parsed, outermost first, normalized: an include of
    /// one of them is a cycle.
    stack: Vec<PathBuf>,
}

impl Resolver<'_> {
    fn document(&mut self, bytes: &[u8], file: &Path, out: &mut Vec<Property>) -> Result<(), ConfError> {
        self.total_bytes = self.total_bytes.saturating_add(bytes.len());
        if self.total_bytes > MAX_TOTAL_BYTES {
            return Err(xml_error(
                file,
                1,
                format!("this file and its includes exceed {} MiB in all", MAX_TOTAL_BYTES >> 20),
            ));
        }
        let items = parse_items(bytes, file)?;
        self.items(items, file, out)
    }

    fn items(&mut self, items: Vec<Item>, file: &Path, out: &mut Vec<Property>) -> Result<(), ConfError> {
        for item in items {
            match item {
                Item::Property(p) => out.push(p),
                Item::Include { href, line, fallback } => self.include(&href, line, fallback, file, out)?,
            }
        }
        Ok(())
    }

    fn include(
        &mut self,
        href: &str,
        line: u64,
        fallback: Option<Vec<Item>>,
        file: &Path,
        out: &mut Vec<Property>,
    ) -> Result<(), ConfError> {
        if href.contains("://") {
            return Err(xml_error(file, line, format!("xi:include href {href:?}: only file paths are supported")));
        }
        let base = file.parent().unwrap_or_else(|| Path::new(""));
        let target = normalize(&base.join(href));
        if self.stack.contains(&target) {
            let mut chain: Vec<String> = self.stack.iter().map(|p| p.display().to_string()).collect();
            chain.push(target.display().to_string());
            return Err(xml_error(file, line, format!("include cycle: {}", chain.join(" -> "))));
        }
        if self.stack.len() > MAX_INCLUDE_DEPTH {
            return Err(xml_error(
                file,
                line,
                format!("xi:include of {href:?} nests deeper than {MAX_INCLUDE_DEPTH} levels"),
            ));
        }
        match self.includes.read(&target) {
            Ok(bytes) => {
                self.stack.push(target.clone());
                let result = self.document(&bytes, &target, out);
                self.stack.pop();
                result
            }
            Err(err) => match fallback {
                Some(items) => {
                    tracing::debug!(file = %file.display(), line, href, error = %err, "xi:include failed; using its fallback");
                    self.items(items, file, out)
                }
                None => Err(xml_error(
                    file,
                    line,
                    format!("cannot include {href:?} ({}): {err}; add an <xi:fallback/> if the file is optional", target.display()),
                )),
            },
        }
    }
}

/// Removes `.` and resolves `..` lexically, so that `a/../b.xml` and
/// `b.xml` are recognized as the same file in cycle detection without
/// touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn xml_error(file: &Path, line: u64, message: impl Into<String>) -> ConfError {
    ConfError::Xml { file: file.to_owned(), line, message: message.into() }
}

/// Byte offsets of line starts, to turn reader positions into line numbers
/// without rescanning the text for every property.
struct Lines {
    newlines: Vec<usize>,
}

impl Lines {
    fn new(bytes: &[u8]) -> Lines {
        Lines { newlines: bytes.iter().enumerate().filter(|(_, &b)| b == b'\n').map(|(i, _)| i).collect() }
    }

    fn line(&self, pos: u64) -> u64 {
        let pos = usize::try_from(pos).unwrap_or(usize::MAX);
        self.newlines.partition_point(|&nl| nl < pos) as u64 + 1
    }
}

/// Checks size and encoding, then parses one file's syntax.
fn parse_items(bytes: &[u8], file: &Path) -> Result<Vec<Item>, ConfError> {
    if bytes.len() > MAX_FILE_BYTES {
        let line = Lines::new(&bytes[..MAX_FILE_BYTES]).line(MAX_FILE_BYTES as u64);
        return Err(xml_error(
            file,
            line,
            format!("file is larger than {} MiB (the limit was reached on this line)", MAX_FILE_BYTES >> 20),
        ));
    }
    if bytes.starts_with(&[0xFE, 0xFF]) || bytes.starts_with(&[0xFF, 0xFE]) {
        return Err(xml_error(file, 1, "file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"));
    }
    let bytes = bytes.strip_prefix(&[0xEF, 0xBB, 0xBF]).unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let at = e.valid_up_to();
        let line = Lines::new(&bytes[..at]).line(at as u64);
        xml_error(file, line, format!("invalid UTF-8 at byte offset {at}; configuration files must be UTF-8"))
    })?;
    let mut parser = Parser { reader: NsReader::from_str(text), lines: Lines::new(text.as_bytes()), file };
    parser.reader.config_mut().check_comments = true;
    parser.document()
}

/// What a start or empty tag is, as far as this format cares.
#[derive(Debug, PartialEq, Eq)]
enum Tag {
    Include,
    Fallback,
    /// Any element of no namespace, by local name.
    Plain(String),
}

struct Parser<'a> {
    reader: NsReader<&'a [u8]>,
    lines: Lines,
    file: &'a Path,
}

impl Parser<'_> {
    fn line(&self) -> u64 {
        self.lines.line(self.reader.buffer_position())
    }

    fn error(&self, message: impl Into<String>) -> ConfError {
        xml_error(self.file, self.line(), message)
    }

    fn next(&mut self) -> Result<Event<'static>, ConfError> {
        match self.reader.read_event() {
            Ok(event) => Ok(event.into_owned()),
            Err(err) => {
                let line = self.lines.line(self.reader.error_position());
                Err(xml_error(self.file, line, format!("malformed XML: {err}")))
            }
        }
    }

    fn classify(&self, start: &BytesStart) -> Result<Tag, ConfError> {
        let (ns, local) = self.reader.resolve_element(start.name());
        let local = String::from_utf8_lossy(local.as_ref()).into_owned();
        match ns {
            ResolveResult::Bound(ns) if ns.as_ref() == XINCLUDE_NS => match local.as_str() {
                "include" => Ok(Tag::Include),
                "fallback" => Ok(Tag::Fallback),
                _ => Err(self.error(format!("unknown XInclude element <{local}>"))),
            },
            ResolveResult::Unbound => Ok(Tag::Plain(local)),
            ResolveResult::Bound(ns) => Err(self.error(format!(
                "element <{}> is in namespace {:?}, which a configuration file does not use",
                String::from_utf8_lossy(start.name().as_ref()),
                String::from_utf8_lossy(ns.as_ref())
            ))),
            ResolveResult::Unknown(prefix) => Err(self.error(format!(
                "element <{}> uses the undeclared namespace prefix {:?} (for includes, declare xmlns:xi=\"http://www.w3.org/2001/XInclude\")",
                String::from_utf8_lossy(start.name().as_ref()),
                String::from_utf8_lossy(&prefix)
            ))),
        }
    }

    /// Prolog, the `<configuration>` element, epilog.
    fn document(&mut self) -> Result<Vec<Item>, ConfError> {
        let mut items = None;
        loop {
            match self.next()? {
                Event::Decl(decl) => {
                    if let Some(Ok(encoding)) = decl.encoding() {
                        let encoding = String::from_utf8_lossy(&encoding).to_ascii_lowercase();
                        if encoding != "utf-8" && encoding != "utf8" && encoding != "us-ascii" {
                            return Err(self.error(format!(
                                "the XML declaration says encoding {encoding:?}; configuration files must be UTF-8"
                            )));
                        }
                    }
                }
                // <?xml-stylesheet?> and other processing instructions.
                Event::PI(_) | Event::Comment(_) => {}
                Event::DocType(_) => {
                    return Err(self.error("DOCTYPE declarations are not allowed in configuration files (Weir never expands entities they define)"));
                }
                Event::Text(text) if is_blank(&text) => {}
                Event::Start(start) | Event::Empty(start) if items.is_some() => {
                    let name = String::from_utf8_lossy(start.name().as_ref()).into_owned();
                    return Err(self.error(format!("element <{name}> after </configuration>; a file has one root element")));
                }
                Event::Start(start) => {
                    self.expect_root(&start)?;
                    items = Some(self.configuration_body(Some(self.line()), b"configuration")?);
                }
                Event::Empty(start) => {
                    self.expect_root(&start)?;
                    items = Some(Vec::new());
                }
                Event::Eof => {
                    return items.ok_or_else(|| self.error("no <configuration> element (the file is empty or holds only comments)"));
                }
                Event::End(end) => {
                    return Err(self.error(format!(
                        "closing tag </{}> without an opening tag",
                        String::from_utf8_lossy(end.name().as_ref())
                    )));
                }
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(self.error("text outside the <configuration> element"));
                }
            }
        }
    }

    fn expect_root(&self, start: &BytesStart) -> Result<(), ConfError> {
        match self.classify(start)? {
            Tag::Plain(name) if name == "configuration" => Ok(()),
            _ => Err(self.error(format!(
                "root element is <{}>; a configuration file's root element is <configuration>",
                String::from_utf8_lossy(start.name().as_ref())
            ))),
        }
    }

    /// The children of `<configuration>` or `<xi:fallback>` (whose end tag
    /// is `end`), up to and including that end tag.
    fn configuration_body(&mut self, opened: Option<u64>, end: &[u8]) -> Result<Vec<Item>, ConfError> {
        let mut items = Vec::new();
        let what = String::from_utf8_lossy(end).into_owned();
        loop {
            match self.next()? {
                Event::Start(start) => match self.classify(&start)? {
                    Tag::Plain(name) if name == "property" => items.push(Item::Property(self.property()?)),
                    Tag::Include => items.push(self.include(&start, false)?),
                    _ => return Err(self.unexpected_element(&start, &what)),
                },
                Event::Empty(start) => match self.classify(&start)? {
                    Tag::Plain(name) if name == "property" => {
                        return Err(self.error("empty <property/>: a property needs a <name> and a <value>"));
                    }
                    Tag::Include => items.push(self.include(&start, true)?),
                    _ => return Err(self.unexpected_element(&start, &what)),
                },
                Event::End(e) if e.name().as_ref() == end => return Ok(items),
                Event::End(e) => {
                    return Err(self.error(format!(
                        "closing tag </{}> where </{what}> was expected",
                        String::from_utf8_lossy(e.name().as_ref())
                    )));
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::Text(text) if is_blank(&text) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(self.error(format!("text directly inside <{what}>; values belong in <property><value>")));
                }
                Event::Eof => return Err(self.unclosed(&what, opened)),
                Event::Decl(_) | Event::DocType(_) => {
                    return Err(self.error("XML or DOCTYPE declaration inside the document"));
                }
            }
        }
    }

    fn unexpected_element(&self, start: &BytesStart, parent: &str) -> ConfError {
        self.error(format!(
            "unexpected element <{}> in <{parent}> (expected <property> or <xi:include>)",
            String::from_utf8_lossy(start.name().as_ref())
        ))
    }

    fn unclosed(&self, what: &str, opened: Option<u64>) -> ConfError {
        match opened {
            Some(line) => self.error(format!("end of file inside <{what}> opened on line {line}")),
            None => self.error(format!("end of file inside <{what}>")),
        }
    }

    /// The body of a `<property>`, after its start tag.
    fn property(&mut self) -> Result<Property, ConfError> {
        let opened = self.line();
        let mut name: Option<String> = None;
        let mut value: Option<(String, u64)> = None;
        let mut is_final: Option<bool> = None;
        loop {
            match self.next()? {
                ev @ (Event::Start(_) | Event::Empty(_)) => {
                    let (start, empty) = match ev {
                        Event::Start(s) => (s, false),
                        Event::Empty(s) => (s, true),
                        _ => unreachable!("matched Start or Empty above"),
                    };
                    let field = match self.classify(&start)? {
                        Tag::Plain(field) => field,
                        _ => return Err(self.error("xi:include inside <property>; includes go directly in <configuration>")),
                    };
                    let line = self.line();
                    let text = if empty { String::new() } else { self.text_content(&field)? };
                    match field.as_str() {
                        "name" => {
                            if name.is_some() {
                                return Err(self.error("a <property> with two <name> elements"));
                            }
                            let trimmed = text.trim();
                            if trimmed.is_empty() {
                                return Err(xml_error(self.file, line, "empty <name> in <property>"));
                            }
                            name = Some(trimmed.to_owned());
                        }
                        "value" => {
                            if value.is_some() {
                                return Err(self.error("a <property> with two <value> elements"));
                            }
                            value = Some((text, line));
                        }
                        "final" => {
                            if is_final.is_some() {
                                return Err(self.error("a <property> with two <final> elements"));
                            }
                            is_final = Some(match text.trim() {
                                "true" => true,
                                "false" => false,
                                other => {
                                    return Err(xml_error(
                                        self.file,
                                        line,
                                        format!("<final> must be true or false, not {other:?}"),
                                    ));
                                }
                            });
                        }
                        // Documentation and provenance (Hadoop's dump writes
                        // <source>), read and ignored.
                        "description" | "source" | "tag" => {}
                        other => {
                            return Err(xml_error(
                                self.file,
                                line,
                                format!("unexpected element <{other}> in <property> (expected <name>, <value>, <final>, <description>)"),
                            ));
                        }
                    }
                }
                Event::End(e) if e.name().as_ref() == b"property" => {
                    let Some(name) = name else {
                        return Err(xml_error(self.file, opened, "<property> without a <name>"));
                    };
                    let Some((value, line)) = value else {
                        return Err(xml_error(
                            self.file,
                            opened,
                            format!("property {name} has no <value> (write <value/> for an empty value)"),
                        ));
                    };
                    return Ok(Property {
                        name,
                        value,
                        is_final: is_final.unwrap_or(false),
                        file: self.file.to_owned(),
                        line,
                    });
                }
                Event::End(e) => {
                    return Err(self.error(format!(
                        "closing tag </{}> where </property> was expected",
                        String::from_utf8_lossy(e.name().as_ref())
                    )));
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::Text(text) if is_blank(&text) => {}
                Event::Text(_) | Event::CData(_) | Event::GeneralRef(_) => {
                    return Err(self.error("text directly inside <property>; put it in <value>"));
                }
                Event::Eof => return Err(self.unclosed("property", Some(opened))),
                Event::Decl(_) | Event::DocType(_) => {
                    return Err(self.error("XML or DOCTYPE declaration inside the document"));
                }
            }
        }
    }

    /// The text of a leaf element (`<name>`, `<value>`...) up to its end
    /// tag: text, CDATA, predefined entities and character references.
    fn text_content(&mut self, field: &str) -> Result<String, ConfError> {
        let opened = self.line();
        let mut out = String::new();
        loop {
            match self.next()? {
                Event::Text(text) => {
                    let text = text.xml10_content().map_err(|e| self.error(format!("in <{field}>: {e}")))?;
                    out.push_str(&text);
                }
                Event::CData(cdata) => {
                    let text = cdata.xml10_content().map_err(|e| self.error(format!("in <{field}>: {e}")))?;
                    out.push_str(&text);
                }
                Event::GeneralRef(reference) => {
                    let resolved = match reference.resolve_char_ref() {
                        Ok(Some(ch)) => ch,
                        Ok(None) => {
                            let name = reference.decode().map_err(|e| self.error(format!("in <{field}>: {e}")))?;
                            match &*name {
                                "lt" => '<',
                                "gt" => '>',
                                "amp" => '&',
                                "apos" => '\'',
                                "quot" => '"',
                                other => {
                                    return Err(self.error(format!(
                                        "undefined entity &{other}; in <{field}> (only &lt; &gt; &amp; &apos; &quot; and character references like &#38; exist)"
                                    )));
                                }
                            }
                        }
                        Err(e) => return Err(self.error(format!("bad character reference in <{field}>: {e}"))),
                    };
                    out.push(resolved);
                }
                Event::Comment(_) | Event::PI(_) => {}
                Event::End(e) if e.name().as_ref() == field.as_bytes() => return Ok(out),
                Event::End(e) => {
                    return Err(self.error(format!(
                        "closing tag </{}> where </{field}> was expected",
                        String::from_utf8_lossy(e.name().as_ref())
                    )));
                }
                Event::Start(e) | Event::Empty(e) => {
                    return Err(self.error(format!(
                        "element <{}> inside <{field}>; <{field}> holds text only (use CDATA or &lt; for a literal '<')",
                        String::from_utf8_lossy(e.name().as_ref())
                    )));
                }
                Event::Eof => return Err(self.unclosed(field, Some(opened))),
                Event::Decl(_) | Event::DocType(_) => {
                    return Err(self.error("XML or DOCTYPE declaration inside the document"));
                }
            }
            if out.len() > MAX_VALUE_BYTES {
                return Err(self.error(format!("<{field}> is longer than {MAX_VALUE_BYTES} bytes")));
            }
        }
    }

    /// An `<xi:include>`, after its start (or empty) tag.
    fn include(&mut self, start: &BytesStart, empty: bool) -> Result<Item, ConfError> {
        let line = self.line();
        let mut href = None;
        for attr in start.attributes() {
            let attr = attr.map_err(|e| self.error(format!("bad attribute in <xi:include>: {e}")))?;
            if attr.key.as_ref() == b"href" {
                let value = attr
                    .decode_and_unescape_value(self.reader.decoder())
                    .map_err(|e| self.error(format!("bad href in <xi:include>: {e}")))?;
                href = Some(value.into_owned());
            }
        }
        let href = match href {
            Some(h) if !h.trim().is_empty() => h.trim().to_owned(),
            _ => return Err(self.error("<xi:include> without an href")),
        };
        let end_name = start.name().as_ref().to_vec();
        let mut fallback = None;
        if !empty {
            loop {
                match self.next()? {
                    Event::Start(s) if self.classify(&s)? == Tag::Fallback => {
                        if fallback.is_some() {
                            return Err(self.error("<xi:include> with two <xi:fallback> elements"));
                        }
                        let fallback_end = s.name().as_ref().to_vec();
                        fallback = Some(self.configuration_body(Some(self.line()), &fallback_end)?);
                    }
                    Event::Empty(s) if self.classify(&s)? == Tag::Fallback => {
                        if fallback.is_some() {
                            return Err(self.error("<xi:include> with two <xi:fallback> elements"));
                        }
                        fallback = Some(Vec::new());
                    }
                    Event::End(e) if e.name().as_ref() == end_name.as_slice() => break,
                    Event::Comment(_) | Event::PI(_) => {}
                    Event::Text(text) if is_blank(&text) => {}
                    Event::Eof => return Err(self.unclosed("xi:include", Some(line))),
                    _ => return Err(self.error("<xi:include> may only contain an <xi:fallback>")),
                }
            }
        }
        Ok(Item::Include { href, line, fallback })
    }
}

fn is_blank(text: &quick_xml::events::BytesText) -> bool {
    text.iter().all(|b| b.is_ascii_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Serves includes from memory.
    struct MemIncludes(HashMap<PathBuf, Vec<u8>>);

    impl IncludeReader for MemIncludes {
        fn read(&self, path: &Path) -> std::io::Result<Vec<u8>> {
            self.0.get(path).cloned().ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))
        }
    }

    fn parse(text: &str) -> Result<Vec<Property>, ConfError> {
        parse_hadoop_bytes(text.as_bytes(), Path::new("/conf/site.xml"), &NoIncludes)
    }

    fn err(text: &str) -> String {
        match parse(text) {
            Ok(props) => panic!("expected an error, parsed {props:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn prop(name: &str, value: &str) -> String {
        format!("<property><name>{name}</name><value>{value}</value></property>")
    }

    #[test]
    fn reads_names_values_final_and_lines() {
        let props = parse(
            "<?xml version=\"1.0\"?>\n<?xml-stylesheet type=\"text/xsl\" href=\"configuration.xsl\"?>\n<configuration>\n  <property>\n    <name> a.b </name>\n    <value>  x  </value>\n    <final>true</final>\n    <description>d</description>\n  </property>\n</configuration>\n",
        )
        .unwrap();
        assert_eq!(
            props,
            vec![Property {
                name: "a.b".into(),
                value: "  x  ".into(),
                is_final: true,
                file: "/conf/site.xml".into(),
                line: 6
            }]
        );
    }

    #[test]
    fn entities_cdata_and_character_references_are_resolved() {
        let props = parse(&format!(
            "<configuration>{}</configuration>",
            prop("k", "a&amp;b&lt;c&gt;&quot;&apos;&#65;&#x42;<![CDATA[<x>&amp;]]><!-- gone -->z")
        ))
        .unwrap();
        assert_eq!(props[0].value, "a&b<c>\"'AB<x>&amp;z");
    }

    #[test]
    fn duplicate_names_in_one_file_are_all_returned_in_order() {
        // The layering in config.rs keeps the last and warns.
        let props = parse(&format!("<configuration>{}{}</configuration>", prop("k", "1"), prop("k", "2"))).unwrap();
        let values: Vec<_> = props.iter().map(|p| p.value.as_str()).collect();
        assert_eq!(values, ["1", "2"]);
    }

    #[test]
    fn malformed_files_give_file_and_line() {
        let cases: &[(&str, &str)] = &[
            ("", "/conf/site.xml:1: no <configuration> element (the file is empty or holds only comments)"),
            ("<configuration>\n<property>\n", "/conf/site.xml:3: end of file inside <property> opened on line 2"),
            (
                "<configuration>\n<property><name>a</nme></property>\n</configuration>",
                "/conf/site.xml:2: malformed XML: ill-formed document: expected `</name>`, but `</nme>` was found",
            ),
            (
                "<configuration>\n<property>\n<value>v</value>\n</property>\n</configuration>",
                "/conf/site.xml:2: <property> without a <name>",
            ),
            (
                "<configuration>\n<property><name>a</name></property>\n</configuration>",
                "/conf/site.xml:2: property a has no <value> (write <value/> for an empty value)",
            ),
            ("<configuration>\nhello\n</configuration>", "/conf/site.xml:3: text directly inside <configuration>; values belong in <property><value>"),
            ("<configuration/>\ntrailing", "/conf/site.xml:2: text outside the <configuration> element"),
            ("<conf/>", "/conf/site.xml:1: root element is <conf>; a configuration file's root element is <configuration>"),
            ("<configuration/><configuration/>", "/conf/site.xml:1: element <configuration> after </configuration>; a file has one root element"),
            (
                "<configuration>\n<property><name>a</name><value>x<b/></value></property></configuration>",
                "/conf/site.xml:2: element <b> inside <value>; <value> holds text only (use CDATA or &lt; for a literal '<')",
            ),
            (
                "<configuration><property><name>a</name><value>&foo;</value></property></configuration>",
                "/conf/site.xml:1: undefined entity &foo; in <value> (only &lt; &gt; &amp; &apos; &quot; and character references like &#38; exist)",
            ),
            (
                "<configuration><property><name>a</name><value>1</value><final>yes</final></property></configuration>",
                "/conf/site.xml:1: <final> must be true or false, not \"yes\"",
            ),
            (
                "<configuration><property><name>a</name><vaule>1</vaule></property></configuration>",
                "/conf/site.xml:1: unexpected element <vaule> in <property> (expected <name>, <value>, <final>, <description>)",
            ),
            (
                "<configuration><xi:include href=\"x.xml\"/></configuration>",
                "/conf/site.xml:1: element <xi:include> uses the undeclared namespace prefix \"xi\" (for includes, declare xmlns:xi=\"http://www.w3.org/2001/XInclude\")",
            ),
            ("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><configuration/>", "/conf/site.xml:1: the XML declaration says encoding \"iso-8859-1\"; configuration files must be UTF-8"),
        ];
        for (text, expected) in cases {
            assert_eq!(&err(text), expected, "input: {text:?}");
        }
    }

    #[test]
    fn billion_laughs_is_refused_without_expanding() {
        let text = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<configuration><property><name>a</name><value>&lol3;</value></property></configuration>"#;
        assert_eq!(
            err(text),
            "/conf/site.xml:6: DOCTYPE declarations are not allowed in configuration files (Weir never expands entities they define)"
        );
    }

    #[test]
    fn encodings_and_byte_order_marks() {
        let mut utf8_bom = vec![0xEF, 0xBB, 0xBF];
        utf8_bom.extend_from_slice(format!("<configuration>{}</configuration>", prop("a", "1")).as_bytes());
        assert_eq!(parse_hadoop_bytes(&utf8_bom, Path::new("f.xml"), &NoIncludes).unwrap()[0].value, "1");

        let utf16 = [0xFF, 0xFE, b'<', 0];
        assert_eq!(
            parse_hadoop_bytes(&utf16, Path::new("f.xml"), &NoIncludes).unwrap_err().to_string(),
            "f.xml:1: file is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8"
        );
        let latin1 = b"<configuration>\n<property><name>a</name><value>caf\xe9</value></property></configuration>";
        assert_eq!(
            parse_hadoop_bytes(latin1, Path::new("f.xml"), &NoIncludes).unwrap_err().to_string(),
            "f.xml:2: invalid UTF-8 at byte offset 50; configuration files must be UTF-8"
        );
        // A byte order mark anywhere but at the start is text outside elements.
        assert_eq!(err("<!-- c -->\n\u{FEFF}<configuration/>"), "/conf/site.xml:2: text outside the <configuration> element");
    }

    #[test]
    fn huge_files_and_values_are_refused() {
        let mut huge = b"<configuration>\n<!--".to_vec();
        huge.resize(MAX_FILE_BYTES + 10, b'x');
        assert_eq!(
            parse_hadoop_bytes(&huge, Path::new("big.xml"), &NoIncludes).unwrap_err().to_string(),
            "big.xml:2: file is larger than 16 MiB (the limit was reached on this line)"
        );
        let long = "v".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(
            err(&format!("<configuration>{}</configuration>", prop("a", &long))),
            "/conf/site.xml:1: <value> is longer than 1048576 bytes"
        );
    }

    fn includes(files: &[(&str, &str)]) -> MemIncludes {
        MemIncludes(files.iter().map(|(p, t)| (PathBuf::from(p), t.as_bytes().to_vec())).collect())
    }

    const XI: &str = "xmlns:xi=\"http://www.w3.org/2001/XInclude\"";

    #[test]
    fn include_inserts_properties_in_place_relative_to_the_including_file() {
        let fs = includes(&[("/conf/sub/more.xml", &format!("<configuration>{}</configuration>", prop("b", "2")))]);
        let text = format!("<configuration {XI}>{}<xi:include href=\"sub/./more.xml\"/>{}</configuration>", prop("a", "1"), prop("c", "3"));
        let props = parse_hadoop_bytes(text.as_bytes(), Path::new("/conf/site.xml"), &fs).unwrap();
        let got: Vec<_> = props.iter().map(|p| (p.name.as_str(), p.file.to_str().unwrap())).collect();
        assert_eq!(got, [("a", "/conf/site.xml"), ("b", "/conf/sub/more.xml"), ("c", "/conf/site.xml")]);
    }

    #[test]
    fn fallback_applies_only_when_the_include_cannot_be_read() {
        let text = format!(
            "<configuration {XI}>\n<xi:include href=\"missing.xml\"><xi:fallback>{}</xi:fallback></xi:include>\n</configuration>",
            prop("a", "fallback")
        );
        let props = parse(&text).unwrap();
        assert_eq!(props[0].value, "fallback");

        let fs = includes(&[("/conf/missing.xml", &format!("<configuration>{}</configuration>", prop("a", "real")))]);
        let props = parse_hadoop_bytes(text.as_bytes(), Path::new("/conf/site.xml"), &fs).unwrap();
        assert_eq!(props.len(), 1);
        assert_eq!(props[0].value, "real");

        let empty_fallback = format!("<configuration {XI}><xi:include href=\"missing.xml\"><xi:fallback/></xi:include></configuration>");
        assert!(parse(&empty_fallback).unwrap().is_empty());
    }

    #[test]
    fn a_missing_include_without_fallback_names_the_file() {
        let fs = includes(&[]);
        let text = format!("<configuration {XI}>\n\n<xi:include href=\"extra.xml\"/></configuration>");
        let e = parse_hadoop_bytes(text.as_bytes(), Path::new("/conf/site.xml"), &fs).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/conf/site.xml:3: cannot include \"extra.xml\" (/conf/extra.xml): entity not found; add an <xi:fallback/> if the file is optional"
        );
    }

    #[test]
    fn include_cycles_and_depth_are_bounded() {
        let a = format!("<configuration {XI}><xi:include href=\"b.xml\"/></configuration>");
        let b = format!("<configuration {XI}>\n<xi:include href=\"../conf/a.xml\"/></configuration>");
        let fs = includes(&[("/conf/a.xml", &a), ("/conf/b.xml", &b)]);
        let e = parse_hadoop_bytes(a.as_bytes(), Path::new("/conf/a.xml"), &fs).unwrap_err();
        assert_eq!(e.to_string(), "/conf/b.xml:2: include cycle: /conf/a.xml -> /conf/b.xml -> /conf/a.xml");

        let mut files = Vec::new();
        for i in 0..20 {
            files.push((format!("/d/{i}.xml"), format!("<configuration {XI}><xi:include href=\"{}.xml\"/></configuration>", i + 1)));
        }
        let fs = MemIncludes(files.iter().map(|(p, t)| (PathBuf::from(p), t.clone().into_bytes())).collect());
        let e = parse_hadoop_bytes(files[0].1.as_bytes(), Path::new("/d/0.xml"), &fs).unwrap_err();
        assert_eq!(e.to_string(), "/d/8.xml:1: xi:include of \"9.xml\" nests deeper than 8 levels");
    }

    #[test]
    fn repeated_includes_are_bounded_in_total() {
        // Each level includes the next one 16 times: 16^7 reads without a
        // total budget.
        let mut files = HashMap::new();
        let filler = "x".repeat(1 << 20);
        for i in 0..7 {
            let inc = format!("<xi:include href=\"{}.xml\"/>", i + 1).repeat(16);
            files.insert(PathBuf::from(format!("/d/{i}.xml")), format!("<configuration {XI}><!--{filler}-->{inc}</configuration>").into_bytes());
        }
        files.insert(PathBuf::from("/d/7.xml"), b"<configuration/>".to_vec());
        let top = files[Path::new("/d/0.xml")].clone();
        let e = parse_hadoop_bytes(&top, Path::new("/d/0.xml"), &MemIncludes(files)).unwrap_err();
        assert!(e.to_string().ends_with("this file and its includes exceed 64 MiB in all"), "{e}");
    }
}
