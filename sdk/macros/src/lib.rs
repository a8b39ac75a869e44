//! The `#[step]` attribute of `weir-sdk`. Plugin authors use it as `#[weir_sdk::step]`; the
//! generated code names only `weir_sdk`, never wit-bindgen.

use proc_macro::TokenStream;
use quote::quote;
use syn::{ItemFn, parse_macro_input, spanned::Spanned};

/// Turns a plain function into the step a plugin exports.
///
/// The function keeps its signature and stays callable (and testable) as is:
///
/// ```ignore
/// #[weir_sdk::step]
/// fn run(ctx: &weir_sdk::Context, input: In, config: Config) -> Result<Out, weir_sdk::StepError>
/// ```
///
/// `In` and `Config` implement `serde::Deserialize`, `Out` implements `serde::Serialize`. Input
/// that does not deserialize is reported as `StepError::InvalidInput`, config as
/// `StepError::Config`, both with serde's message. Only one function per crate can be the step.
#[proc_macro_attribute]
pub fn step(attr: TokenStream, item: TokenStream) -> TokenStream {
    if !attr.is_empty() {
        let attr = proc_macro2::TokenStream::from(attr);
        return syn::Error::new(attr.span(), "#[weir_sdk::step] takes no arguments")
            .to_compile_error()
            .into();
    }
    let func = parse_macro_input!(item as ItemFn);
    if func.sig.inputs.len() != 3 {
        return syn::Error::new(
            func.sig.inputs.span(),
            "a step function takes (ctx: &weir_sdk::Context, input: In, config: Config)",
        )
        .to_compile_error()
        .into();
    }
    let name = &func.sig.ident;
    quote! {
        #func

        // Natively the function is only called by tests; this keeps it from counting as unused.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = #name;
        };

        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct __WeirStep;
            impl ::weir_sdk::__private::bindings::exports::weir::plugin::step::Guest for __WeirStep {
                fn run(
                    ctx: ::weir_sdk::__private::bindings::weir::plugin::types::Context,
                    input: ::std::string::String,
                    config: ::std::string::String,
                ) -> ::std::result::Result<
                    ::std::string::String,
                    ::weir_sdk::__private::bindings::weir::plugin::types::StepError,
                > {
                    ::weir_sdk::__private::guest_run(#name, ctx, &input, &config)
                }
            }
            ::weir_sdk::__private::bindings::export!(__WeirStep with_types_in ::weir_sdk::__private::bindings);
        };
    }
    .into()
}
