//! The binary `sam build` packages as this function's `bootstrap`. Building this test also
//! builds the binary, which the deployed-stack harness (tests/src/stack) runs behind its Lambda
//! Runtime API: one build serves both.

/// Without the stack's settings the function refuses to start and names what is missing.
#[test]
fn refuses_to_start_without_the_stack_settings() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_start-run"))
        .env_clear()
        .output()
        .expect("the function binary runs");
    assert!(!out.status.success(), "started without FERRY_TABLE");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("FERRY_TABLE"), "{text}");
}
