//! Raw libkmod ABI, resolved at run time from `libkmod.so.2`.
//!
//! Why run-time loading (`dlopen`) instead of linking: `cargo build` needs no
//! libkmod headers or libclang, and `nfkit` starts on hosts without libkmod
//! (RHEL6-era hosts, busybox images); only the module commands then fail,
//! with [`super::Error::LibraryMissing`]. systemd ≥ 256 loads libkmod the same
//! way (`dlopen_libkmod()` in src/shared/module-util.c).
//!
//! The signatures below are those of `libkmod/libkmod.h`; every symbol used
//! here has been exported under `LIBKMOD_5` since kmod 5 (2011), so any
//! libkmod.so.2 a current distribution ships has them. We deliberately do not
//! resolve `kmod_module_new_from_name_lookup`: kmod 30–32 export it under the
//! wrong symbol version (`LIBKMOD_5`, fixed in kmod 33 by a5b7ac3).
//!
//! Nothing outside `crate::kmod` sees these pointers: the safe owners in
//! [`super::Context`] and [`super::Module`] call each function from exactly
//! one place.

use std::ffi::{c_char, c_int, c_uint, c_void};
use std::marker::{PhantomData, PhantomPinned};
use std::sync::OnceLock;

use libloading::Library;

use super::Error;

/// The soname we load; the same string systemd passes to dlopen().
pub const LIBKMOD_SONAME: &str = "libkmod.so.2";

/// Opaque `struct kmod_ctx`. Not constructible, not `Send`/`Sync`, not `Unpin`
/// (the layout recommended by the Rustonomicon for opaque C types).
#[repr(C)]
pub struct kmod_ctx {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque `struct kmod_module`.
#[repr(C)]
pub struct kmod_module {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque `struct kmod_list` (a node of libkmod's doubly linked list).
#[repr(C)]
pub struct kmod_list {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// Opaque `struct kmod_config_iter`.
#[repr(C)]
pub struct kmod_config_iter {
    _data: [u8; 0],
    _marker: PhantomData<(*mut u8, PhantomPinned)>,
}

/// `int (*run_install)(struct kmod_module *m, const char *cmdline, void *data)`.
pub type RunInstallFn = unsafe extern "C" fn(*mut kmod_module, *const c_char, *mut c_void) -> c_int;

/// `void (*print_action)(struct kmod_module *m, bool install, const char *options)`.
pub type PrintActionFn = unsafe extern "C" fn(*mut kmod_module, bool, *const c_char);

/// `void (*log_fn)(void *data, int priority, const char *file, int line,
/// const char *fn, const char *format, va_list args)`.
///
/// `va_list` is declared as an opaque pointer: it is the last argument, so a
/// different `va_list` passing convention could only affect that value, never
/// the ones before it. On the targets where [`VA_LIST_IS_POINTER`] holds, the
/// value *is* a pointer (see there) and is handed on to [`vsnprintf`]
/// unchanged; elsewhere it is never read.
pub type LogFn = unsafe extern "C" fn(
    *mut c_void,
    c_int,
    *const c_char,
    c_int,
    *const c_char,
    *const c_char,
    *mut c_void,
);

/// True where a `va_list` received as a function argument is passed as one
/// pointer, so that forwarding it unchanged to another function taking a
/// `va_list` is the same as C code doing so:
/// - x86_64 System V: `va_list` is `__va_list_tag[1]`, an array, which decays
///   to a `__va_list_tag *` as a parameter;
/// - aarch64 AAPCS64 (Linux): `va_list` is a 32-byte struct; composites over
///   16 bytes are passed by reference to a copy the caller made, so the
///   parameter is a pointer to that copy (which the callee may consume).
///
/// Other targets (i386, where `va_list` is a `char *` passed by value, would
/// also work, but are not built or tested here) keep the format string only.
pub const VA_LIST_IS_POINTER: bool = cfg!(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
));

// SAFETY: this is glibc's and musl's `vsnprintf` prototype except for `ap`,
// declared as the pointer the `va_list` is on the targets where it is used
// (VA_LIST_IS_POINTER); the one caller checks that constant first.
unsafe extern "C" {
    /// libc's `vsnprintf(char *str, size_t size, const char *format,
    /// va_list ap)`, with `ap` declared as the opaque pointer libkmod's log
    /// callback receives (valid only where [`VA_LIST_IS_POINTER`]).
    pub fn vsnprintf(
        buf: *mut c_char,
        size: usize,
        format: *const c_char,
        ap: *mut c_void,
    ) -> c_int;
}

/// syslog's `LOG_INFO`: libkmod logs lines up to this priority when asked to
/// (errors, warnings, notices and infos such as a failed insert's errno).
pub const LOG_INFO: c_int = 6;

macro_rules! kmod_api {
    ($( $name:ident : fn($($arg:ty),* $(,)?) $(-> $ret:ty)? ; )*) => {
        /// Function pointers resolved from libkmod.so.2. The `Library` is
        /// kept alongside so that the pointers stay valid; the table lives
        /// in a process-wide `OnceLock` and is never dropped.
        #[allow(non_snake_case, reason = "fields are named after the C symbols")]
        pub struct Api {
            _lib: Library,
            $( pub $name: unsafe extern "C" fn($($arg),*) $(-> $ret)?, )*
        }

        impl Api {
            fn resolve(lib: Library) -> Result<Self, Error> {
                $(
                    // SAFETY: the type we ask for is the C prototype of this
                    // symbol from libkmod.h (unchanged since LIBKMOD_5), and
                    // the pointer is only used while `lib` is alive (it is
                    // stored next to it in `Api`, which is never dropped).
                    let $name = unsafe {
                        *lib.get::<unsafe extern "C" fn($($arg),*) $(-> $ret)?>(
                            concat!(stringify!($name), "\0").as_bytes(),
                        )
                        .map_err(|e| Error::MissingSymbol {
                            symbol: stringify!($name),
                            detail: e.to_string(),
                        })?
                    };
                )*
                Ok(Self { _lib: lib, $( $name, )* })
            }
        }
    };
}

kmod_api! {
    kmod_new: fn(*const c_char, *const *const c_char) -> *mut kmod_ctx;
    kmod_unref: fn(*mut kmod_ctx) -> *mut kmod_ctx;
    kmod_load_resources: fn(*mut kmod_ctx) -> c_int;
    kmod_set_log_fn: fn(*mut kmod_ctx, Option<LogFn>, *const c_void);
    kmod_set_log_priority: fn(*mut kmod_ctx, c_int);
    kmod_get_dirname: fn(*const kmod_ctx) -> *const c_char;
    kmod_list_next: fn(*const kmod_list, *const kmod_list) -> *mut kmod_list;
    kmod_config_get_blacklists: fn(*const kmod_ctx) -> *mut kmod_config_iter;
    kmod_config_iter_get_key: fn(*const kmod_config_iter) -> *const c_char;
    kmod_config_iter_next: fn(*mut kmod_config_iter) -> bool;
    kmod_config_iter_free_iter: fn(*mut kmod_config_iter);
    kmod_module_new_from_name: fn(*mut kmod_ctx, *const c_char, *mut *mut kmod_module) -> c_int;
    kmod_module_new_from_lookup: fn(*mut kmod_ctx, *const c_char, *mut *mut kmod_list) -> c_int;
    kmod_module_new_from_path: fn(*mut kmod_ctx, *const c_char, *mut *mut kmod_module) -> c_int;
    kmod_module_unref: fn(*mut kmod_module) -> *mut kmod_module;
    kmod_module_unref_list: fn(*mut kmod_list) -> c_int;
    kmod_module_get_module: fn(*const kmod_list) -> *mut kmod_module;
    kmod_module_get_name: fn(*const kmod_module) -> *const c_char;
    kmod_module_get_path: fn(*const kmod_module) -> *const c_char;
    kmod_module_get_options: fn(*const kmod_module) -> *const c_char;
    kmod_module_get_install_commands: fn(*const kmod_module) -> *const c_char;
    kmod_module_get_remove_commands: fn(*const kmod_module) -> *const c_char;
    kmod_module_get_dependencies: fn(*const kmod_module) -> *mut kmod_list;
    kmod_module_get_softdeps: fn(*const kmod_module, *mut *mut kmod_list, *mut *mut kmod_list) -> c_int;
    kmod_module_get_initstate: fn(*const kmod_module) -> c_int;
    kmod_module_get_refcnt: fn(*const kmod_module) -> c_int;
    kmod_module_get_holders: fn(*const kmod_module) -> *mut kmod_list;
    kmod_module_get_info: fn(*const kmod_module, *mut *mut kmod_list) -> c_int;
    kmod_module_info_get_key: fn(*const kmod_list) -> *const c_char;
    kmod_module_info_get_value: fn(*const kmod_list) -> *const c_char;
    kmod_module_info_free_list: fn(*mut kmod_list);
    kmod_module_probe_insert_module: fn(
        *mut kmod_module,
        c_uint,
        *const c_char,
        Option<RunInstallFn>,
        *const c_void,
        Option<PrintActionFn>,
    ) -> c_int;
    kmod_module_remove_module: fn(*mut kmod_module, c_uint) -> c_int;
    kmod_module_insert_module: fn(*mut kmod_module, c_uint, *const c_char) -> c_int;
}

static API: OnceLock<Result<Api, Error>> = OnceLock::new();

/// The process-wide libkmod function table, loading `libkmod.so.2` on first use.
///
/// The result (success or failure) is cached: a host without libkmod reports
/// the same [`Error::LibraryMissing`] on every call without retrying dlopen.
pub fn api() -> Result<&'static Api, Error> {
    API.get_or_init(|| {
        // SAFETY: loading libkmod runs its ELF constructors; libkmod has none
        // with side effects beyond its own static state (it only defines
        // functions and data), and we load it by its well-known soname.
        let lib = unsafe { Library::new(LIBKMOD_SONAME) }.map_err(|e| Error::LibraryMissing {
            detail: e.to_string(),
        })?;
        Api::resolve(lib)
    })
    .as_ref()
    .map_err(Clone::clone)
}
