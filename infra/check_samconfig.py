"""Offline check of samconfig.toml against template.yaml (run by scripts/check-deploy.sh).

Every environment (default, dev, prod) must deploy a stack of its own, with the capabilities the
template needs, and override only parameters the template declares, with allowed values.
"""
import re
import sys
import tomllib

from cfnlint.decode import decode

REQUIRED_ENVS = ("default", "dev", "prod")
REQUIRED_CAPABILITIES = {"CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"}


def overrides(text):
    """`Key="value" Key2=value2` -> dict (the format sam writes into samconfig.toml)."""
    return {k: (v1 if v1 else v2) for k, v1, v2 in re.findall(r'(\w+)=(?:"([^"]*)"|(\S+))', text)}


def main(samconfig="samconfig.toml", template="template.yaml"):
    with open(samconfig, "rb") as f:
        cfg = tomllib.load(f)
    tpl, errs = decode(template)
    if errs:
        sys.exit(f"{template}: {errs}")
    params = tpl["Parameters"]
    problems, stacks = [], {}
    for env in REQUIRED_ENVS:
        if env not in cfg:
            problems.append(f"samconfig.toml: environment [{env}] is missing")
            continue
        section = cfg[env]
        stack = section.get("global", {}).get("parameters", {}).get("stack_name") or section.get(
            "deploy", {}
        ).get("parameters", {}).get("stack_name")
        if not stack:
            problems.append(f"[{env}]: no stack_name")
        deploy = section.get("deploy", {}).get("parameters", {})
        caps = set(str(deploy.get("capabilities", "")).split())
        if not REQUIRED_CAPABILITIES <= caps:
            problems.append(f"[{env}.deploy.parameters] capabilities must include {sorted(REQUIRED_CAPABILITIES)}")
        if deploy.get("resolve_s3") is not True:
            problems.append(f"[{env}.deploy.parameters] resolve_s3 = true (sam uploads the artefacts)")
        ov = overrides(deploy.get("parameter_overrides", ""))
        for k, v in ov.items():
            if k not in params:
                problems.append(f"[{env}] parameter_overrides names {k}, which template.yaml does not declare")
                continue
            allowed = params[k].get("AllowedValues")
            if allowed and v not in [str(a) for a in allowed]:
                problems.append(f"[{env}] {k}={v} is not one of {allowed}")
            pattern = params[k].get("AllowedPattern")
            if pattern and not re.fullmatch(pattern, v):
                problems.append(f"[{env}] {k}={v} does not match {pattern}")
        if env != "default":
            if ov.get("Environment") != env:
                problems.append(f"[{env}] parameter_overrides must set Environment={env}")
            if stack in stacks.values():
                problems.append(f"[{env}] stack_name {stack} is shared with another environment")
            stacks[env] = stack
    if problems:
        sys.exit("\n".join(problems))
    print(f"samconfig.toml: {', '.join(REQUIRED_ENVS)} ok")


if __name__ == "__main__":
    main(*sys.argv[1:])
