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
///
/// The component also exports `validate-config`, which Weir calls when a flow loads: the
/// config must deserialize into `Config` and, with `#[weir_sdk::step(validate = check)]`,
/// pass `fn check(config: &Config) -> Result<(), weir_sdk::StepError>` (for what serde cannot
/// see, such as a regex that does not compile).
#[proc_macro_attribute]
pub fn step(attr: TokenStream, item: TokenStream) -> TokenStream {
    let check = match parse_args(attr.into()) {
        Ok(check) => check,
        Err(e) => return e.to_compile_error().into(),
    };
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
    let check = match &check {
        Some(path) => quote! { ::std::option::Option::Some(#path) },
        None => quote! { ::std::option::Option::None },
    };
    quote! {
        #func

        // Natively the function is only called by tests; this keeps it (and the config check)
        // from counting as unused.
        #[cfg(not(target_arch = "wasm32"))]
        const _: () = {
            let _ = #name;
            let _ = ::weir_sdk::__private::check_type(#name, #check);
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

                fn validate_config(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    ::weir_sdk::__private::guest_validate(#name, #check, &config)
                }
            }
            ::weir_sdk::__private::bindings::export!(__WeirStep with_types_in ::weir_sdk::__private::bindings);
        };
    }
    .into()
}

/// The attribute's arguments: nothing, or `validate = path`.
fn parse_args(attr: proc_macro2::TokenStream) -> syn::Result<Option<syn::Path>> {
    if attr.is_empty() {
        return Ok(None);
    }
    let pair: syn::MetaNameValue = syn::parse2(attr.clone()).map_err(|_| {
        syn::Error::new(
            attr.span(),
            "#[weir_sdk::step] takes nothing or `validate = path::to::check`",
        )
    })?;
    if !pair.path.is_ident("validate") {
        return Err(syn::Error::new(
            pair.path.span(),
            "the only argument of #[weir_sdk::step] is `validate = path::to::check`",
        ));
    }
    match pair.value {
        syn::Expr::Path(path) => Ok(Some(path.path)),
        other => Err(syn::Error::new(
            other.span(),
            "`validate` names a function: fn(&Config) -> Result<(), weir_sdk::StepError>",
        )),
    }
}
