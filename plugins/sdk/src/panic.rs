//! Forwards a plugin's panic message to the host's log.
//!
//! A plugin gets no stderr, so Rust's default panic hook writes the
//! message nowhere and the host sees only the trap. The hook installed
//! here sends `plugin panicked at FILE:LINE:COLUMN: MESSAGE` through the
//! plugin's `logging` import at error level, once, before the trap ends
//! the call.
//!
//! [`provider::export_provider!`](crate::provider::export_provider) and
//! [`compactor::export_compactor!`](crate::compactor::export_compactor)
//! install it before the first export of every instance runs (a static
//! constructor that wit-bindgen's export glue runs first), so an author
//! does nothing. [`install_provider`] and [`install_compactor`] are there
//! for plugins that export the bindings by other means; calling them
//! again is harmless.

use std::panic::PanicHookInfo;
use std::sync::Once;

static INSTALLED: Once = Once::new();

/// The one line the host logs for a panic.
pub fn message(info: &PanicHookInfo<'_>) -> String {
    let what = info
        .payload_as_str()
        .unwrap_or("(a panic payload that is not a string)");
    match info.location() {
        Some(at) => format!(
            "plugin panicked at {}:{}:{}: {what}",
            at.file(),
            at.line(),
            at.column()
        ),
        None => format!("plugin panicked: {what}"),
    }
}

fn install(log: fn(&str)) {
    INSTALLED.call_once(|| {
        std::panic::set_hook(Box::new(move |info| log(&message(info))));
    });
}

/// Installs the hook for a provider plugin (idempotent).
pub fn install_provider() {
    install(|line| {
        crate::provider::druid::plugin::logging::log(
            crate::provider::druid::plugin::logging::Level::Error,
            line,
        );
    });
}

/// Installs the hook for a compactor plugin (idempotent).
pub fn install_compactor() {
    install(|line| {
        crate::compactor::druid::plugin::logging::log(
            crate::compactor::druid::plugin::logging::Level::Error,
            line,
        );
    });
}

/// Registers `$install` as a static constructor of the plugin's own crate.
/// wit-bindgen's export glue calls `__wasm_call_ctors` before the first
/// export of an instance runs, so the hook is in place before any plugin
/// code. The static lives in the crate that invokes the export macro (a
/// cdylib's own code is always linked), not in the SDK's rlib.
#[doc(hidden)]
#[macro_export]
macro_rules! __druid_panic_hook_ctor {
    ($install:path) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            #[used]
            #[unsafe(link_section = ".init_array")]
            static __DRUID_PLUGIN_SDK_PANIC_HOOK: extern "C" fn() = {
                extern "C" fn __druid_plugin_sdk_panic_hook() {
                    $install();
                }
                __druid_plugin_sdk_panic_hook
            };
        };
    };
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn the_message_names_the_location_and_the_text() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&seen);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Ok(mut s) = sink.lock() {
                s.push(super::message(info));
            }
        }));
        let line = line!() + 1;
        let result = std::panic::catch_unwind(|| std::panic::panic_any(format!("bad {}", 42)));
        std::panic::set_hook(previous);
        assert!(result.is_err());
        let seen = seen.lock().map(|s| s.clone()).unwrap_or_default();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert!(
            seen[0].starts_with(&format!("plugin panicked at {}:{line}:", file!())),
            "{seen:?}"
        );
        assert!(seen[0].ends_with(": bad 42"), "{seen:?}");
    }
}
