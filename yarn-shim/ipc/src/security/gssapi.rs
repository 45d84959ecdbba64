//! The system's GSS-API library (MIT Kerberos' `libgssapi_krb5.so.2`),
//! loaded at run time and only when Kerberos is switched on, so a shim
//! without Kerberos neither needs the library nor its headers to build.
//!
//! Only what SASL GSSAPI (RFC 4752) needs is declared: acquiring a
//! credential from a keytab (`gss_acquire_cred_from`, MIT 1.11+),
//! accepting (and, for tests and clients, initiating) a Kerberos V5
//! context, naming the peer, and wrap/unwrap for the final security-layer
//! negotiation. Every handle is owned by one Rust value and released when
//! it drops; a context is used by one connection at a time only (GSS-API
//! objects are not shared between threads here).

use std::ffi::{c_char, c_int, c_void, CString};
use std::path::Path;
use std::ptr;
use std::sync::OnceLock;

/// The library's soname on Debian and most Linux distributions.
pub const LIBRARY: &str = "libgssapi_krb5.so.2";

/// The largest token we hand the library (Kerberos AP-REQs with PACs are a
/// few kilobytes; 64 KiB is what Hadoop's clients ever send).
pub const MAX_TOKEN_LEN: usize = 64 * 1024;

type OmUint32 = u32;

#[repr(C)]
struct Buffer {
    length: usize,
    value: *mut c_void,
}

impl Buffer {
    fn empty() -> Buffer {
        Buffer { length: 0, value: ptr::null_mut() }
    }

    /// A buffer pointing at `bytes` (which must outlive its use).
    fn of(bytes: &[u8]) -> Buffer {
        Buffer { length: bytes.len(), value: bytes.as_ptr() as *mut c_void }
    }
}

#[repr(C)]
struct OidDesc {
    length: OmUint32,
    elements: *mut c_void,
}

#[repr(C)]
struct KeyValueElement {
    key: *const c_char,
    value: *const c_char,
}

#[repr(C)]
struct KeyValueSet {
    count: OmUint32,
    elements: *mut KeyValueElement,
}

type Name = *mut c_void;
type Cred = *mut c_void;
type Ctx = *mut c_void;
type Oid = *mut OidDesc;

const GSS_C_INITIATE: c_int = 1;
const GSS_C_ACCEPT: c_int = 2;
const GSS_C_INDEFINITE: OmUint32 = 0xffff_ffff;
const GSS_C_GSS_CODE: c_int = 1;
const GSS_C_MECH_CODE: c_int = 2;
const GSS_S_CONTINUE_NEEDED: OmUint32 = 1;
const GSS_C_MUTUAL_FLAG: OmUint32 = 2;
const GSS_C_INTEG_FLAG: OmUint32 = 32;

/// 1.2.840.113554.1.2.2, the Kerberos V5 mechanism.
const KRB5_MECH: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02";
/// 1.2.840.113554.1.2.2.1, GSS_KRB5_NT_PRINCIPAL_NAME.
const KRB5_NT_PRINCIPAL_NAME: &[u8] = b"\x2a\x86\x48\x86\xf7\x12\x01\x02\x02\x01";

type ImportName = unsafe extern "C" fn(*mut OmUint32, *mut Buffer, Oid, *mut Name) -> OmUint32;
type AcquireCredFrom = unsafe extern "C" fn(
    *mut OmUint32,
    Name,
    OmUint32,
    *mut c_void,
    c_int,
    *const KeyValueSet,
    *mut Cred,
    *mut *mut c_void,
    *mut OmUint32,
) -> OmUint32;
type AcceptSecContext = unsafe extern "C" fn(
    *mut OmUint32,
    *mut Ctx,
    Cred,
    *mut Buffer,
    *mut c_void,
    *mut Name,
    *mut Oid,
    *mut Buffer,
    *mut OmUint32,
    *mut OmUint32,
    *mut Cred,
) -> OmUint32;
type InitSecContext = unsafe extern "C" fn(
    *mut OmUint32,
    Cred,
    *mut Ctx,
    Name,
    Oid,
    OmUint32,
    OmUint32,
    *mut c_void,
    *mut Buffer,
    *mut Oid,
    *mut Buffer,
    *mut OmUint32,
    *mut OmUint32,
) -> OmUint32;
type DisplayName = unsafe extern "C" fn(*mut OmUint32, Name, *mut Buffer, *mut Oid) -> OmUint32;
type DisplayStatus = unsafe extern "C" fn(*mut OmUint32, OmUint32, c_int, Oid, *mut OmUint32, *mut Buffer) -> OmUint32;
type Wrap = unsafe extern "C" fn(*mut OmUint32, Ctx, c_int, OmUint32, *mut Buffer, *mut c_int, *mut Buffer) -> OmUint32;
type Unwrap = unsafe extern "C" fn(*mut OmUint32, Ctx, *mut Buffer, *mut Buffer, *mut c_int, *mut OmUint32) -> OmUint32;
type ReleaseBuffer = unsafe extern "C" fn(*mut OmUint32, *mut Buffer) -> OmUint32;
type ReleaseName = unsafe extern "C" fn(*mut OmUint32, *mut Name) -> OmUint32;
type ReleaseCred = unsafe extern "C" fn(*mut OmUint32, *mut Cred) -> OmUint32;
type DeleteSecContext = unsafe extern "C" fn(*mut OmUint32, *mut Ctx, *mut Buffer) -> OmUint32;

/// The loaded library's entry points.
struct Api {
    _lib: libloading::Library,
    import_name: ImportName,
    acquire_cred_from: AcquireCredFrom,
    accept_sec_context: AcceptSecContext,
    init_sec_context: InitSecContext,
    display_name: DisplayName,
    display_status: DisplayStatus,
    wrap: Wrap,
    unwrap: Unwrap,
    release_buffer: ReleaseBuffer,
    release_name: ReleaseName,
    release_cred: ReleaseCred,
    delete_sec_context: DeleteSecContext,
}

/// What went wrong in the library, with its own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GssError(pub String);

fn load() -> Result<Api, String> {
    // SAFETY: loading MIT's GSS-API library runs only its own initialisers.
    let lib = unsafe { libloading::Library::new(LIBRARY) }
        .map_err(|e| format!("cannot load the system's GSS-API library {LIBRARY} (install MIT Kerberos' libgssapi-krb5-2): {e}"))?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the symbol's type is the C prototype from MIT's gssapi.h.
            *unsafe { lib.get(concat!($name, "\0").as_bytes()) }.map_err(|e| format!("{LIBRARY} has no {}: {e}", $name))?
        };
    }
    Ok(Api {
        import_name: sym!("gss_import_name"),
        acquire_cred_from: sym!("gss_acquire_cred_from"),
        accept_sec_context: sym!("gss_accept_sec_context"),
        init_sec_context: sym!("gss_init_sec_context"),
        display_name: sym!("gss_display_name"),
        display_status: sym!("gss_display_status"),
        wrap: sym!("gss_wrap"),
        unwrap: sym!("gss_unwrap"),
        release_buffer: sym!("gss_release_buffer"),
        release_name: sym!("gss_release_name"),
        release_cred: sym!("gss_release_cred"),
        delete_sec_context: sym!("gss_delete_sec_context"),
        _lib: lib,
    })
}

fn api() -> Result<&'static Api, GssError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load).as_ref().map_err(|e| GssError(e.clone()))
}

fn is_error(major: OmUint32) -> bool {
    major & 0xffff_0000 != 0
}

/// Takes the bytes out of a buffer the library allocated, and frees it.
fn take(api: &Api, buf: &mut Buffer) -> Vec<u8> {
    let out = if buf.value.is_null() || buf.length == 0 {
        Vec::new()
    } else {
        // SAFETY: the library filled `buf` with `length` bytes at `value`.
        unsafe { std::slice::from_raw_parts(buf.value as *const u8, buf.length) }.to_vec()
    };
    let mut minor = 0;
    // SAFETY: `buf` came from the library (or is empty, which it accepts).
    unsafe { (api.release_buffer)(&mut minor, buf) };
    out
}

/// The library's messages for a status pair, as `gss_display_status` gives
/// them (major, then the mechanism's minor), bounded in number.
fn describe(api: &Api, what: &str, major: OmUint32, minor: OmUint32) -> GssError {
    let mut parts = Vec::new();
    for (code, kind) in [(major, GSS_C_GSS_CODE), (minor, GSS_C_MECH_CODE)] {
        if code == 0 {
            continue;
        }
        let mut context: OmUint32 = 0;
        for _ in 0..8 {
            let mut m = 0;
            let mut buf = Buffer::empty();
            // SAFETY: out-pointers are valid; a null mech OID means the default.
            let r = unsafe { (api.display_status)(&mut m, code, kind, ptr::null_mut(), &mut context, &mut buf) };
            let text = String::from_utf8_lossy(&take(api, &mut buf)).into_owned();
            if is_error(r) {
                break;
            }
            if !text.is_empty() {
                parts.push(text);
            }
            if context == 0 {
                break;
            }
        }
    }
    if parts.is_empty() {
        parts.push(format!("major status 0x{major:08x}, minor 0x{minor:08x}"));
    }
    GssError(format!("{what}: {}", parts.join(", ")))
}

struct OwnedName(Name);

impl OwnedName {
    fn import(api: &Api, text: &str, kind: &'static [u8]) -> Result<OwnedName, GssError> {
        let mut oid = OidDesc { length: kind.len() as OmUint32, elements: kind.as_ptr() as *mut c_void };
        let mut buf = Buffer::of(text.as_bytes());
        let (mut minor, mut name) = (0, ptr::null_mut());
        // SAFETY: buffer and OID point at live bytes; the library copies them.
        let major = unsafe { (api.import_name)(&mut minor, &mut buf, &mut oid, &mut name) };
        if is_error(major) {
            return Err(describe(api, &format!("cannot read the Kerberos principal {text:?}"), major, minor));
        }
        Ok(OwnedName(name))
    }
}

impl Drop for OwnedName {
    fn drop(&mut self) {
        if let Ok(api) = api() {
            let mut minor = 0;
            // SAFETY: the name came from the library and is released once.
            unsafe { (api.release_name)(&mut minor, &mut self.0) };
        }
    }
}

fn display(api: &Api, name: Name) -> Result<String, GssError> {
    let (mut minor, mut buf) = (0, Buffer::empty());
    // SAFETY: `name` is a live name from the library.
    let major = unsafe { (api.display_name)(&mut minor, name, &mut buf, ptr::null_mut()) };
    if is_error(major) {
        return Err(describe(api, "cannot print the peer's principal", major, minor));
    }
    String::from_utf8(take(api, &mut buf)).map_err(|_| GssError("the peer's principal is not UTF-8".into()))
}

/// A credential: a service's key from a keytab (acceptor), or a user's
/// ticket cache (initiator).
pub struct Credential {
    cred: Cred,
    principal: String,
}

// SAFETY: the handle is only used through &mut self or by contexts that
// borrow it for one call; MIT's credentials are safe to move between threads.
unsafe impl Send for Credential {}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential").field("principal", &self.principal).finish()
    }
}

impl Credential {
    fn acquire(principal: &str, store: &[(&str, &Path)], usage: c_int) -> Result<Credential, GssError> {
        let api = api()?;
        let name = OwnedName::import(api, principal, KRB5_NT_PRINCIPAL_NAME)?;
        let keys: Vec<(CString, CString)> = store
            .iter()
            .map(|(k, v)| {
                let v = v.to_str().and_then(|v| CString::new(v).ok()).ok_or_else(|| GssError(format!("{}: not a usable path", v.display())))?;
                Ok((CString::new(*k).map_err(|_| GssError("bad key".into()))?, v))
            })
            .collect::<Result<_, GssError>>()?;
        let mut elements: Vec<KeyValueElement> = keys.iter().map(|(k, v)| KeyValueElement { key: k.as_ptr(), value: v.as_ptr() }).collect();
        let set = KeyValueSet { count: elements.len() as OmUint32, elements: elements.as_mut_ptr() };
        let (mut minor, mut cred) = (0, ptr::null_mut());
        // SAFETY: every pointer is live for the call; null mechs = the defaults.
        let major = unsafe {
            (api.acquire_cred_from)(&mut minor, name.0, GSS_C_INDEFINITE, ptr::null_mut(), usage, &set, &mut cred, ptr::null_mut(), ptr::null_mut())
        };
        if is_error(major) {
            let from = store.iter().map(|(k, v)| format!("{k} {}", v.display())).collect::<Vec<_>>().join(", ");
            return Err(describe(api, &format!("cannot get credentials for {principal} from {from}"), major, minor));
        }
        Ok(Credential { cred, principal: principal.to_owned() })
    }

    /// The service's key for `principal` from `keytab`, to accept with.
    pub fn acceptor(principal: &str, keytab: &Path) -> Result<Credential, GssError> {
        Credential::acquire(principal, &[("keytab", keytab)], GSS_C_ACCEPT)
    }

    /// `principal`'s ticket from the cache file `ccache`, to initiate with.
    pub fn initiator(principal: &str, ccache: &Path) -> Result<Credential, GssError> {
        Credential::acquire(principal, &[("ccache", ccache)], GSS_C_INITIATE)
    }

    pub fn principal(&self) -> &str {
        &self.principal
    }
}

impl Drop for Credential {
    fn drop(&mut self) {
        if let Ok(api) = api() {
            let mut minor = 0;
            // SAFETY: the credential came from the library and is released once.
            unsafe { (api.release_cred)(&mut minor, &mut self.cred) };
        }
    }
}

/// One step of establishing a context.
#[derive(Debug, PartialEq, Eq)]
pub struct ContextStep {
    /// The token to send the peer (may be empty).
    pub token: Vec<u8>,
    /// The context is established.
    pub complete: bool,
}

/// A Kerberos V5 security context with one peer.
pub struct SecurityContext {
    ctx: Ctx,
    cred: Credential,
    /// The initiator's target (None when accepting).
    target: Option<OwnedName>,
    peer: Option<String>,
    complete: bool,
}

// SAFETY: one connection owns the context and uses it through &mut self.
unsafe impl Send for SecurityContext {}

impl std::fmt::Debug for SecurityContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityContext").field("local", &self.cred.principal).field("peer", &self.peer).field("complete", &self.complete).finish()
    }
}

impl SecurityContext {
    /// A context that accepts with `cred`.
    pub fn acceptor(cred: Credential) -> SecurityContext {
        SecurityContext { ctx: ptr::null_mut(), cred, target: None, peer: None, complete: false }
    }

    /// A context that initiates to `service@host` (as Java's SASL client
    /// names the server: Hadoop's protocol and server id).
    pub fn initiator(cred: Credential, target_principal: &str) -> Result<SecurityContext, GssError> {
        let api = api()?;
        let target = OwnedName::import(api, target_principal, KRB5_NT_PRINCIPAL_NAME)?;
        Ok(SecurityContext { ctx: ptr::null_mut(), cred, target: Some(target), peer: None, complete: false })
    }

    /// The authenticated peer's principal (`alice@REALM`) once accepted.
    pub fn peer(&self) -> Option<&str> {
        self.peer.as_deref()
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    /// Feeds the peer's token (empty for an initiator's first step).
    pub fn step(&mut self, input: &[u8]) -> Result<ContextStep, GssError> {
        if input.len() > MAX_TOKEN_LEN {
            return Err(GssError(format!("GSS-API token of {} bytes exceeds the limit of {MAX_TOKEN_LEN}", input.len())));
        }
        if self.complete {
            return Err(GssError("the security context is already established".into()));
        }
        let api = api()?;
        let mut in_buf = Buffer::of(input);
        let mut out = Buffer::empty();
        let mut minor = 0;
        let mut mech: Oid = ptr::null_mut();
        let major = match &self.target {
            None => {
                let mut src: Name = ptr::null_mut();
                // SAFETY: pointers are live; the context handle is ours.
                let major = unsafe {
                    (api.accept_sec_context)(
                        &mut minor,
                        &mut self.ctx,
                        self.cred.cred,
                        &mut in_buf,
                        ptr::null_mut(),
                        &mut src,
                        &mut mech,
                        &mut out,
                        ptr::null_mut(),
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                };
                let src = OwnedName(src);
                if !is_error(major) && major & GSS_S_CONTINUE_NEEDED == 0 {
                    self.peer = Some(display(api, src.0)?);
                }
                if src.0.is_null() {
                    std::mem::forget(src);
                }
                major
            }
            Some(target) => {
                let mut krb5 = OidDesc { length: KRB5_MECH.len() as OmUint32, elements: KRB5_MECH.as_ptr() as *mut c_void };
                // SAFETY: pointers are live; the context handle is ours.
                unsafe {
                    (api.init_sec_context)(
                        &mut minor,
                        self.cred.cred,
                        &mut self.ctx,
                        target.0,
                        &mut krb5,
                        GSS_C_MUTUAL_FLAG | GSS_C_INTEG_FLAG,
                        0,
                        ptr::null_mut(),
                        &mut in_buf,
                        &mut mech,
                        &mut out,
                        ptr::null_mut(),
                        ptr::null_mut(),
                    )
                }
            }
        };
        let token = take(api, &mut out);
        if is_error(major) {
            let what = if self.target.is_some() { "GSS initiate failed" } else { "GSS accept failed" };
            return Err(describe(api, what, major, minor));
        }
        if !mech.is_null() {
            // SAFETY: a mech OID the library returned points at static storage.
            let m = unsafe { &*mech };
            // SAFETY: `elements` holds `length` bytes.
            let bytes = unsafe { std::slice::from_raw_parts(m.elements as *const u8, m.length as usize) };
            if bytes != KRB5_MECH {
                return Err(GssError("the peer used a GSS-API mechanism other than Kerberos V5 (SASL GSSAPI needs Kerberos)".into()));
            }
        }
        self.complete = major & GSS_S_CONTINUE_NEEDED == 0;
        Ok(ContextStep { token, complete: self.complete })
    }

    fn established(&self) -> Result<&'static Api, GssError> {
        if !self.complete {
            return Err(GssError("the security context is not established yet".into()));
        }
        api()
    }

    /// `gss_wrap` with integrity only (no confidentiality).
    pub fn wrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError> {
        let api = self.established()?;
        let (mut minor, mut conf) = (0, 0);
        let mut input = Buffer::of(data);
        let mut out = Buffer::empty();
        // SAFETY: the context is established and ours; buffers are live.
        let major = unsafe { (api.wrap)(&mut minor, self.ctx, 0, 0, &mut input, &mut conf, &mut out) };
        let bytes = take(api, &mut out);
        if is_error(major) {
            return Err(describe(api, "GSS wrap failed", major, minor));
        }
        Ok(bytes)
    }

    /// `gss_unwrap`: the peer's message, its integrity checked.
    pub fn unwrap(&mut self, data: &[u8]) -> Result<Vec<u8>, GssError> {
        if data.len() > MAX_TOKEN_LEN {
            return Err(GssError(format!("wrapped message of {} bytes exceeds the limit of {MAX_TOKEN_LEN}", data.len())));
        }
        let api = self.established()?;
        let (mut minor, mut conf, mut qop) = (0, 0, 0);
        let mut input = Buffer::of(data);
        let mut out = Buffer::empty();
        // SAFETY: the context is established and ours; buffers are live.
        let major = unsafe { (api.unwrap)(&mut minor, self.ctx, &mut input, &mut out, &mut conf, &mut qop) };
        let bytes = take(api, &mut out);
        if is_error(major) {
            return Err(describe(api, "GSS unwrap failed", major, minor));
        }
        Ok(bytes)
    }
}

impl Drop for SecurityContext {
    fn drop(&mut self) {
        if self.ctx.is_null() {
            return;
        }
        if let Ok(api) = api() {
            let mut minor = 0;
            // SAFETY: the context came from the library and is deleted once.
            unsafe { (api.delete_sec_context)(&mut minor, &mut self.ctx, ptr::null_mut()) };
        }
    }
}

/// Whether the library can be loaded here (tests skip when it cannot).
pub fn available() -> Result<(), GssError> {
    api().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A keytab that does not exist: the library's own words, no panic.
    #[test]
    fn a_missing_keytab_is_a_clear_error() {
        if available().is_err() {
            eprintln!("SKIPPED: {LIBRARY} is not installed");
            return;
        }
        // Acquiring may be lazy in MIT: the failure can come at accept time.
        match Credential::acceptor("rm/localhost@NO.SUCH.REALM", Path::new("/nonexistent/rm.keytab")) {
            Err(e) => assert!(e.0.contains("rm/localhost@NO.SUCH.REALM"), "{e}"),
            Ok(cred) => {
                let mut ctx = SecurityContext::acceptor(cred);
                let e = ctx.step(b"\x60\x05junk!").unwrap_err();
                assert!(e.0.starts_with("GSS accept failed"), "{e}");
            }
        }
    }

    #[test]
    fn a_keytab_without_the_principal_is_refused_at_acquisition() {
        if available().is_err() {
            eprintln!("SKIPPED: {LIBRARY} is not installed");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let keytab = dir.path().join("empty.keytab");
        // An empty keytab file of the right version (0x0502) and no keys.
        std::fs::write(&keytab, [0x05, 0x02]).unwrap();
        // MIT checks at acquisition that the keytab holds the principal.
        let e = Credential::acceptor("rm/localhost@EXAMPLE.COM", &keytab).unwrap_err();
        assert!(e.0.starts_with("cannot get credentials for rm/localhost@EXAMPLE.COM from keytab"), "{e}");
        eprintln!("{e}");
    }
}
