#!/usr/bin/env python3
"""Checks deploy/ against itself, the fedbroker binary and docs/deploy.md (docs/deploy.md, last section).

    python3 scripts/deploy-check.py --fedbroker .build/debug/fedbroker

Nothing here needs Docker, a cluster, Terraform or Azure; what those would catch first is
checked offline instead:

* every YAML file parses; every Kubernetes object validates against Kubernetes' OpenAPI schema
  (strict: an unknown field is an error); kustomizations name files that exist (and render, when
  kubectl is on PATH);
* every configuration key in deploy/'s JSON files, and every FEDBROKER_* variable in the
  manifests, compose, the systemd unit and scripts, is one `fedbroker serve --list-config-keys`
  prints (FEDBROKER_ + the key in upper snake case); other FEDBROKER_* names only when allow-listed
  below, with the reason; `fedbroker serve --check-config` accepts every configuration as its
  consumer runs it (the file plus that consumer's FEDBROKER_* environment);
* the manifests agree with the configuration and with each other: listen ports and container
  ports, probes on /livez and /readyz, the grace period against the drain, the journal on a
  persistent volume, workload identity, Services, PodDisruptionBudget and NetworkPolicy selectors,
  the security context, the Deployment and the StatefulSet running the same pod;
* compose, the Dockerfile (no fedbroker-dev in the production stage) and its ignore file, the
  systemd unit;
* the Terraform parses (python-hcl2) and is consistent: variables declared and used, references
  to declared resources, data sources, locals and modules, module arguments against the child
  module's variables, providers pinned with an upper bound.

One line per check, then `deploy-check: N passed, M failed`; the exit status is 1 when any check
failed, 2 on bad usage.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

try:
    import hcl2
    import kubernetes_validate
    import yaml
except ImportError as error:  # pragma: no cover - an environment problem, said plainly
    sys.exit(f"deploy-check: {error.name} is missing: pip install -r scripts/deploy-check/requirements.txt")

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
DOCS_DEPLOY = ROOT / "docs" / "deploy.md"

# The oldest Kubernetes minor the manifests must be valid for (AKS's oldest supported one).
KUBERNETES_VERSION = "1.30.0"
# Where the AKS workload identity webhook projects the service-account token.
WORKLOAD_IDENTITY_TOKEN = "/var/run/secrets/azure/tokens/azure-identity-token"
# The image's WORKDIR: where relative paths in the configuration land inside the container.
IMAGE_WORKDIR = "/var/lib/fedbroker"
# Margin beyond preStop + server.drainSeconds before the SIGKILL: the audit flush and store close.
STOP_MARGIN_SECONDS = 10
# What --check-config gets for store.databaseURL when a manifest takes it from a Secret.
DATABASE_URL_STAND_IN = "postgres://fedbroker_app@postgres.invalid:5432/fedbroker"
DEFAULTS = {"server.listen": "127.0.0.1:7443", "admin.listen": "127.0.0.1:8443", "server.drainSeconds": 10.0,
            "store.dataDir": "fedbroker-data", "audit.journal": True, "store.migrateOnStart": True}

# FEDBROKER_* names that are not FEDBROKER_ + a key, each with the reason it may appear in deploy/.
ALLOWED_VARIABLES = {
    "FEDBROKER_IMDS_URL": ("azure.imdsURL", "older name of azure.imdsURL that serve still reads; the emulator's env.sh exports it"),
    "FEDBROKER_AUTHORITY_URL": ("azure.authorityURL", "older name of azure.authorityURL that serve still reads; env.sh exports it"),
    "FEDBROKER_GRAPH_URL": ("azure.graphURL", "older name of azure.graphURL that serve still reads; env.sh exports it"),
    "FEDBROKER_APP_CLIENT_ID": ("azure.appClientID", "older name of azure.appClientID that serve still reads; env.sh exports it"),
    "FEDBROKER_CA_BUNDLE": ("azure.caBundle", "older name of azure.caBundle that serve still reads; env.sh exports it"),
    "FEDBROKER_VAULT_HOST_SUFFIXES": ("azure.vaultHostSuffixes", "older name of azure.vaultHostSuffixes that serve still reads; env.sh exports it"),
}
ALLOWED_PREFIXES = {
    "FEDBROKER_EMU_": "the emulator's env.sh exports its scenario's ids as FEDBROKER_EMU_*; serve reads none of them",
}
VARIABLE = re.compile(r"\bFEDBROKER_[A-Z0-9_]*[A-Z0-9]")


# --- reporting -------------------------------------------------------------------------------------

class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0

    def check(self, name: str, problems: Iterable[str], detail: str = "") -> bool:
        problems = [p for p in problems if p]
        if problems:
            self.failed += 1
            print(f"FAIL  {name}")
            for problem in problems:
                print(f"        {problem}")
            return False
        self.passed += 1
        print(f"ok    {name}" + (f" ({detail})" if detail else ""))
        return True

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"skip  {name}: {why}")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# --- the binary: keys and --check-config ------------------------------------------------------------

def env_name(key: str) -> str:
    """FEDBROKER_ + the key as swift-configuration's EnvironmentKeyEncoder writes it."""
    parts = []
    for component in key.split("."):
        spaced = "".join(("_" + c) if i and component[i - 1].islower() and c.isupper() else c for i, c in enumerate(component))
        parts.append("".join(c if c.isalnum() else "_" for c in spaced.upper()))
    return "FEDBROKER_" + "_".join(parts)


def clean_environment(extra: dict[str, str], home: str) -> dict[str, str]:
    """No FEDBROKER_* (or anything else) of the machine running the check leaks into the binary."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home, "LANG": "C.UTF-8"}
    env.update(extra)
    return env


class Binary:
    def __init__(self, path: Path, scratch: Path) -> None:
        self.path = path
        self.scratch = scratch
        self.keys: set[str] | None = None
        self.by_variable: dict[str, str] = {}

    def run(self, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.path), *args], env=clean_environment(env, str(self.scratch)),
                              capture_output=True, text=True, timeout=120, cwd=self.scratch)

    def list_keys(self, report: Report) -> None:
        name = "fedbroker serve --list-config-keys"
        try:
            result = self.run(["serve", "--list-config-keys"], {})
        except OSError as error:
            report.check(name, [f"cannot run {self.path}: {error}"])
            return
        keys = [line.strip() for line in result.stdout.splitlines() if line.strip()]
        problems = []
        if result.returncode != 0:
            said = [l for l in (result.stderr or result.stdout).strip().splitlines() if l.strip()]
            problems.append(f"exit {result.returncode}: {(said[0] if said else '')[:300]}")
        elif not keys:
            problems.append("printed no keys")
        else:
            bad = [k for k in keys if not re.fullmatch(r"[a-z][A-Za-z0-9]*(\.[a-z][A-Za-z0-9]*)+", k)]
            if bad:
                problems.append(f"lines that are not keys: {bad[:5]}")
        if report.check(name, problems, f"{len(keys)} keys"):
            self.keys = set(keys)
            self.by_variable = {env_name(k): k for k in keys}

    def check_config(self, report: Report, label: str, config: Path, env: dict[str, str]) -> None:
        name = f"fedbroker serve --check-config: {label}"
        result = self.run(["serve", "--check-config", "--config", str(config)], env)
        problems = []
        if result.returncode != 0:
            said = [l for l in (result.stderr or result.stdout).strip().splitlines() if l.strip()]
            problems.append(f"exit {result.returncode}: {(said[0] if said else '')[:400]}")
        elif "configuration OK" not in result.stdout:
            problems.append(f"exit 0 but no 'configuration OK': {result.stdout.strip()[:200]}")
        shown = ", ".join(sorted(env)) if env else "no FEDBROKER_* environment"
        report.check(name, problems, shown)


def variable_problem(binary: Binary, variable: str) -> str | None:
    """None when the variable is FEDBROKER_ + a key, or allow-listed; otherwise why not."""
    if binary.keys is None:
        return "no key list to check against (--list-config-keys failed)"
    if variable in binary.by_variable:
        return None
    if variable in ALLOWED_VARIABLES:
        key = ALLOWED_VARIABLES[variable][0]
        return None if key in binary.keys else f"{variable} is allow-listed as the older name of {key}, which the binary no longer lists"
    if any(variable.startswith(prefix) for prefix in ALLOWED_PREFIXES):
        return None
    return f"{variable} is not FEDBROKER_ + a configuration key, nor allow-listed"


def key_of(binary: Binary, variable: str) -> str | None:
    if variable in binary.by_variable:
        return binary.by_variable[variable]
    if variable in ALLOWED_VARIABLES:
        return ALLOWED_VARIABLES[variable][0]
    return None


# --- files -------------------------------------------------------------------------------------------

def files(*patterns: str) -> list[Path]:
    found: set[Path] = set()
    for pattern in patterns:
        found.update(p for p in DEPLOY.rglob(pattern) if p.is_file())
    return sorted(found)


def load_yaml(path: Path) -> list[Any]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc is not None]


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in config.items():
        key = f"{prefix}.{name}" if prefix else name
        if isinstance(value, dict):
            out.update(flatten(value, key))
        else:
            out[key] = value
    return out


def walk_strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from walk_strings(k)
            yield from walk_strings(v)
    elif isinstance(value, list):
        for item in value:
            yield from walk_strings(item)


def text_without_comments(path: Path) -> str:
    return "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith(("#", "//", "--")))


def as_bool(value: Any) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def seconds(value: Any) -> float | None:
    """30, "30", "30s", "1m30s" (compose and systemd spell durations so)."""
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):
        return None
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|min|h|m|s)", text)
    if not parts or "".join(n + u for n, u in parts) != text.replace(" ", ""):
        return None
    scale = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600}
    return sum(float(n) * scale[u] for n, u in parts)


def effective(config: dict[str, Any], env: dict[str, str], binary: Binary) -> dict[str, Any]:
    """The file's keys with the environment's on top (the environment wins over the file)."""
    values = dict(config)
    for variable, value in env.items():
        key = key_of(binary, variable)
        if key:
            values[key] = value
    return values


def host_port(value: str) -> tuple[str, int] | None:
    host, _, port = value.rpartition(":")
    return (host, int(port)) if port.isdigit() and host else None


def resolve_in_image(path: str) -> str:
    return path if path.startswith("/") else str(PurePosixPath(IMAGE_WORKDIR) / path)


def under(path: str, directory: str) -> bool:
    return PurePosixPath(path) == PurePosixPath(directory) or PurePosixPath(directory) in PurePosixPath(path).parents


# --- YAML and JSON -----------------------------------------------------------------------------------

def check_yaml(report: Report) -> dict[Path, list[Any]]:
    parsed: dict[Path, list[Any]] = {}
    for path in files("*.yaml", "*.yml"):
        try:
            parsed[path] = load_yaml(path)
            report.check(f"YAML parses: {rel(path)}", [], f"{len(parsed[path])} document(s)")
        except yaml.YAMLError as error:
            report.check(f"YAML parses: {rel(path)}", [str(error).replace("\n", " ")])
    return parsed


def check_config_keys(report: Report, binary: Binary, label: str, config: dict) -> None:
    keys = flatten(config)
    problems = []
    if binary.keys is None:
        problems.append("no key list to check against (--list-config-keys failed)")
    else:
        problems += [f"unknown key {k}" for k in sorted(keys) if k not in binary.keys]
    report.check(f"configuration keys: {label}", problems, f"{len(keys)} keys")


def check_variables(report: Report, binary: Binary, yaml_docs: dict[Path, list[Any]]) -> None:
    for path in files("*.yaml", "*.yml", "*.service", "*.sh", "*.env*", "Dockerfile*", "*.tf", "*.sql"):
        if path.suffix in (".yaml", ".yml"):
            strings = list(walk_strings(yaml_docs.get(path, [])))
            text = "\n".join(strings)
        else:
            text = text_without_comments(path)
        found = sorted(set(VARIABLE.findall(text)))
        if not found:
            continue
        problems = [problem for v in found if (problem := variable_problem(binary, v))]
        keyed = [v for v in found if binary.keys is not None and v in binary.by_variable]
        allowed = [v for v in found if v not in keyed and not variable_problem(binary, v)]
        detail = f"{len(keyed)} configuration keys"
        if allowed:
            reasons = sorted({ALLOWED_VARIABLES[v][1] if v in ALLOWED_VARIABLES else
                              next(r for p, r in ALLOWED_PREFIXES.items() if v.startswith(p)) for v in allowed})
            detail += f"; allow-listed: {', '.join(allowed)} ({'; '.join(reasons)})"
        report.check(f"FEDBROKER_* variables: {rel(path)}", problems, detail)


# --- Kubernetes ---------------------------------------------------------------------------------------

class Build:
    """What one kustomization (with its bases) declares, read without kustomize."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.objects: list[tuple[dict, Path]] = []
        self.generated_configmaps: dict[str, dict[str, Path]] = {}
        self.images: list[dict] = []
        self.problems: list[str] = []

    def of_kind(self, *kinds: str) -> list[dict]:
        return [o for o, _ in self.objects if o.get("kind") in kinds]


def read_kustomization(directory: Path, build: Build, seen: set[Path]) -> None:
    path = directory / "kustomization.yaml"
    if directory in seen:
        build.problems.append(f"{rel(directory)} is included twice")
        return
    seen.add(directory)
    try:
        kustomization = load_yaml(path)[0]
    except (OSError, IndexError, yaml.YAMLError) as error:
        build.problems.append(f"{rel(path)}: {error}")
        return
    for entry in kustomization.get("resources", []):
        target = (directory / entry).resolve()
        if target.is_dir():
            if (target / "kustomization.yaml").is_file():
                read_kustomization(target, build, seen)
            else:
                build.problems.append(f"{rel(path)}: resource {entry} is a directory without kustomization.yaml")
        elif target.is_file():
            try:
                build.objects.extend((obj, target) for obj in load_yaml(target))
            except yaml.YAMLError:
                build.problems.append(f"{rel(path)}: resource {entry} does not parse")
        else:
            build.problems.append(f"{rel(path)}: resource {entry} does not exist")
    for generator in kustomization.get("configMapGenerator", []):
        entries: dict[str, Path] = {}
        for item in generator.get("files", []):
            key, _, source = item.rpartition("=") if "=" in item else (Path(item).name, "", item)
            target = directory / source
            if not target.is_file():
                build.problems.append(f"{rel(path)}: configMapGenerator {generator.get('name')} file {source} does not exist")
            entries[key or Path(source).name] = target
        build.generated_configmaps[generator.get("name", "")] = entries
    for patch in kustomization.get("patches", []) + kustomization.get("patchesStrategicMerge", []):
        source = patch.get("path") if isinstance(patch, dict) else patch
        if source and not (directory / source).is_file():
            build.problems.append(f"{rel(path)}: patch {source} does not exist")
    for image in kustomization.get("images", []):
        build.images.append({**image, "_from": rel(path)})


def pod_template(obj: dict) -> dict | None:
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return obj.get("spec", {}).get("template")
    if kind == "CronJob":
        return obj.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template")
    return None


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A Service's selector (a plain map) or a LabelSelector's matchLabels; an empty one matches
    nothing here, so a forgotten selector is an error rather than "every pod"."""
    if not selector:
        return False
    wanted = selector.get("matchLabels", {}) if ("matchLabels" in selector or "matchExpressions" in selector) else selector
    return bool(wanted) and all(labels.get(k) == v for k, v in wanted.items())


def container_args(container: dict) -> list[str]:
    return [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]


def env_literals(container: dict) -> tuple[dict[str, str], list[str]]:
    literals, from_secrets = {}, []
    for item in container.get("env", []):
        name = item.get("name", "")
        if "value" in item:
            literals[name] = str(item["value"])
        elif item.get("valueFrom", {}).get("secretKeyRef"):
            from_secrets.append(name)
    return literals, from_secrets


def sleep_seconds(container: dict) -> float:
    pre_stop = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"].get("seconds", 0))
    command = pre_stop.get("exec", {}).get("command", [])
    if command and command[0].endswith("sleep") and len(command) == 2:
        return seconds(command[1]) or 0.0
    return 0.0


def port_matches(port: Any, container: dict, name: str) -> bool:
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    return port == name or (name in ports and port == ports[name])


def referenced_secrets(template: dict) -> set[str]:
    names = set()
    spec = template.get("spec", {})
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"].get("secretName"))
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"].get("name"))
    for container in spec.get("containers", []) + spec.get("initContainers", []):
        for item in container.get("env", []):
            ref = item.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                names.add(ref.get("name"))
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"].get("name"))
    return {n for n in names if n}


def security_problems(template: dict, container: dict) -> list[str]:
    spec = template.get("spec", {})
    pod, ctr = spec.get("securityContext", {}), container.get("securityContext", {})
    problems = []
    if not (ctr.get("runAsNonRoot", pod.get("runAsNonRoot")) is True):
        problems.append("runAsNonRoot is not true")
    if ctr.get("runAsUser", pod.get("runAsUser")) == 0:
        problems.append("runs as uid 0")
    if (ctr.get("seccompProfile") or pod.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        problems.append("seccompProfile is not RuntimeDefault")
    if ctr.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation is not false")
    if ctr.get("readOnlyRootFilesystem") is not True:
        problems.append("readOnlyRootFilesystem is not true")
    if "ALL" not in (ctr.get("capabilities", {}).get("drop") or []):
        problems.append("capabilities.drop lacks ALL")
    if ctr.get("privileged"):
        problems.append("privileged")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken is not false (the broker never calls the Kubernetes API)")
    if spec.get("enableServiceLinks") is not False:
        problems.append("enableServiceLinks is not false: Services named fedbroker* would inject FEDBROKER_* variables")
    return problems


def writable_mounts(obj: dict, template: dict, container: dict) -> dict[str, str]:
    """mountPath -> kind of writable storage (emptyDir, pvc) for the container's writable mounts."""
    volumes = {v.get("name"): v for v in template.get("spec", {}).get("volumes", [])}
    claims = {t.get("metadata", {}).get("name") for t in obj.get("spec", {}).get("volumeClaimTemplates", [])}
    out = {}
    for mount in container.get("volumeMounts", []):
        if mount.get("readOnly"):
            continue
        name = mount.get("name")
        if name in claims or "persistentVolumeClaim" in volumes.get(name, {}) or "ephemeral" in volumes.get(name, {}):
            out[mount["mountPath"]] = "pvc"
        elif "emptyDir" in volumes.get(name, {}):
            out[mount["mountPath"]] = "emptyDir"
    return out


def storage_for(path: str, mounts: dict[str, str]) -> str | None:
    best = None
    for mount, kind in mounts.items():
        if under(path, mount) and (best is None or len(mount) > len(best[0])):
            best = (mount, kind)
    return best[1] if best else None


def normalised_pod(obj: dict) -> dict:
    """The pod template with what may differ between the Deployment and the StatefulSet removed:
    the journal switch (FEDBROKER_AUDIT_JOURNAL) and the data volume (emptyDir or a claim)."""
    template = copy.deepcopy(pod_template(obj) or {})
    spec = template.get("spec", {})
    spec["volumes"] = [v for v in spec.get("volumes", []) if v.get("name") != "data"]
    for container in spec.get("containers", []):
        container["env"] = [e for e in container.get("env", []) if e.get("name") != "FEDBROKER_AUDIT_JOURNAL"]
    return template


def first_difference(a: Any, b: Any, path: str = "") -> str:
    if type(a) is not type(b):
        return f"{path or '.'}: {json.dumps(a)[:80]} vs {json.dumps(b)[:80]}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{path}.{key}: only in {'the first' if key in a else 'the second'}"
            found = first_difference(a[key], b[key], f"{path}.{key}")
            if found:
                return found
        return ""
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{path}: {len(a)} items vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            found = first_difference(x, y, f"{path}[{i}]")
            if found:
                return found
        return ""
    return "" if a == b else f"{path}: {json.dumps(a)[:80]} vs {json.dumps(b)[:80]}"


def check_kubernetes(report: Report, binary: Binary, yaml_docs: dict[Path, list[Any]], docs_text: str, scratch: Path) -> None:
    k8s = DEPLOY / "kubernetes"
    if not k8s.is_dir():
        report.check("deploy/kubernetes exists", ["missing"])
        return

    # Every object against Kubernetes' schema, strictly.
    for path, docs in sorted(yaml_docs.items()):
        if k8s not in path.parents:
            continue
        problems = []
        for doc in docs:
            if not isinstance(doc, dict) or doc.get("kind") == "Kustomization" or "apiVersion" not in doc:
                continue
            try:
                kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = "/".join(str(p) for p in error.path)
                problems.append(f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}: {where}: {error.message}")
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as error:
                problems.append(f"{doc.get('kind')}: {error.message}")
        report.check(f"Kubernetes {KUBERNETES_VERSION} schema (strict): {rel(path)}", problems)

    # Kustomizations and what they build.
    directories = sorted(p.parent for p in k8s.rglob("kustomization.yaml"))
    builds: dict[Path, Build] = {}
    included: set[Path] = set()
    for directory in directories:
        build = Build(directory)
        read_kustomization(directory, build, set())
        builds[directory] = build
        try:
            entries = load_yaml(directory / "kustomization.yaml")[0].get("resources", [])
        except (yaml.YAMLError, IndexError, AttributeError):
            entries = []
        for entry in entries:
            target = (directory / entry).resolve()
            if target.is_dir():
                included.add(target)
        report.check(f"kustomization resources exist: {rel(directory)}", build.problems,
                     f"{len(build.objects)} objects, {len(build.generated_configmaps)} generated ConfigMap(s)")
    tops = [d for d in directories if d.resolve() not in included]

    kubectl = shutil.which("kubectl")
    for directory in tops:
        if not kubectl:
            report.skip(f"kubectl kustomize {rel(directory)}", "kubectl is not on PATH")
            continue
        result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
        problems = [] if result.returncode == 0 else [result.stderr.strip()[:400]]
        rendered = []
        if not problems:
            rendered = [d for d in yaml.safe_load_all(result.stdout) if d]
            for doc in rendered:
                try:
                    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
                except kubernetes_validate.ValidationError as error:
                    problems.append(f"rendered {doc.get('kind')}: {error.message}")
        report.check(f"kubectl kustomize renders: {rel(directory)}", problems, f"{len(rendered)} objects, schema-valid")

    images = {(i.get("name"), i.get("newName"), i.get("newTag"), i.get("digest")) for b in builds.values() for i in b.images}
    report.check("kustomizations set one image for fedbroker (pods and the migration Job run the same release)",
                 [] if len({i for i in images if i[0] == "fedbroker"}) <= 1 else [f"differing images entries: {sorted(map(str, images))}"])

    serve_workloads: list[tuple[dict, Path]] = []
    for directory in tops:
        build = builds[directory]
        label = rel(directory)
        workloads = [o for o, _ in build.objects if pod_template(o)]
        configmaps = {o["metadata"]["name"]: o for o in build.of_kind("ConfigMap")}
        services = build.of_kind("Service")
        accounts = {o["metadata"]["name"]: o for o in build.of_kind("ServiceAccount")}

        for obj in workloads:
            template = pod_template(obj)
            spec = template.get("spec", {})
            name = f"{obj['kind']}/{obj['metadata']['name']} in {label}"
            for container in spec.get("containers", []):
                args = container_args(container)
                literals, from_secrets = env_literals(container)
                report.check(f"security context: {name}, container {container.get('name')}", security_problems(template, container))

                problems = [f"Secret {s} is not documented in docs/deploy.md" for s in sorted(referenced_secrets(template)) if s not in docs_text]
                report.check(f"Secrets it needs are documented: {name}", problems, ", ".join(sorted(referenced_secrets(template))))

                if "migrate" in args:
                    problems = []
                    if "--database-url" not in args:
                        problems.append("migrate without --database-url")
                    else:
                        url = args[args.index("--database-url") + 1]
                        var = re.fullmatch(r"\$\((\w+)\)", url)
                        if var and var.group(1) not in from_secrets:
                            problems.append(f"--database-url comes from $({var.group(1)}), which is not taken from a Secret")
                        if "@" in url and ":" in url.split("@")[0].split("//")[-1]:
                            problems.append("the migration URL carries a password in the process's arguments; use PGPASSWORD")
                    if "PGPASSWORD" not in from_secrets:
                        problems.append("PGPASSWORD is not taken from a Secret")
                    report.check(f"migration Job: {name}", problems)
                    continue
                if "serve" not in args:
                    continue
                serve_workloads.append((obj, directory))
                check_serve_workload(report, binary, build, obj, template, container, name, literals, from_secrets,
                                     configmaps, services, accounts, scratch)

            if obj["kind"] in ("Deployment", "StatefulSet"):
                replicas = obj.get("spec", {}).get("replicas", 1)
                report.check(f"at least 2 replicas: {name}", [] if replicas >= 2 else [f"replicas is {replicas}"], f"{replicas}")
            if obj["kind"] == "StatefulSet":
                governing = obj["spec"].get("serviceName")
                headless = [s for s in services if s["metadata"]["name"] == governing and s["spec"].get("clusterIP") == "None"]
                report.check(f"StatefulSet's serviceName is a headless Service: {name}",
                             [] if headless else [f"no headless Service {governing} in {label}"])

        pods = [(o, pod_template(o)) for o in workloads]
        for service in services:
            selected = [(o, t) for o, t in pods if selector_matches(service["spec"].get("selector"), t.get("metadata", {}).get("labels", {}))]
            problems = [] if selected else [f"selector {service['spec'].get('selector')} matches no pod in {label}"]
            for port in service["spec"].get("ports", []):
                target = port.get("targetPort", port.get("port"))
                if selected and not any(port_matches(target, c, str(target)) or any(p.get("containerPort") == target for p in c.get("ports", []))
                                        for _, t in selected for c in t["spec"].get("containers", [])):
                    problems.append(f"targetPort {target} is no container port of the selected pods")
            report.check(f"Service {service['metadata']['name']} selects pods and their ports: {label}", problems)
        for policy_kind in ("PodDisruptionBudget", "NetworkPolicy"):
            for obj in build.of_kind(policy_kind):
                selector = obj["spec"].get("podSelector" if policy_kind == "NetworkPolicy" else "selector")
                selected = [t for _, t in pods if selector_matches(selector, t.get("metadata", {}).get("labels", {}))]
                problems = [] if selected else [f"selector matches no pod in {label}"]
                if policy_kind == "NetworkPolicy" and selected:
                    names = {p.get("name") for t in selected for c in t["spec"].get("containers", []) for p in c.get("ports", [])}
                    for rule in obj["spec"].get("ingress", []):
                        for port in rule.get("ports", []):
                            if isinstance(port.get("port"), str) and port["port"] not in names:
                                problems.append(f"ingress port {port['port']} is not a container port name of the selected pods")
                report.check(f"{policy_kind} {obj['metadata']['name']} selects pods: {label}", problems)

    # The Deployment and the StatefulSet must run the same pod, but for the journal.
    if len(serve_workloads) >= 2:
        first, first_dir = serve_workloads[0]
        problems = []
        for other, other_dir in serve_workloads[1:]:
            difference = first_difference(normalised_pod(first), normalised_pod(other))
            if difference:
                problems.append(f"{first['kind']} ({rel(first_dir)}) and {other['kind']} ({rel(other_dir)}) differ at {difference}")
        report.check("every broker workload runs the same pod (apart from the journal's switch and volume)", problems,
                     ", ".join(f"{o['kind']}" for o, _ in serve_workloads))


def check_serve_workload(report: Report, binary: Binary, build: Build, obj: dict, template: dict, container: dict, name: str,
                         literals: dict[str, str], from_secrets: list[str], configmaps: dict, services: list,
                         accounts: dict, scratch: Path) -> None:
    spec = template["spec"]
    args = container_args(container)

    # --config names a file of a ConfigMap mounted as a directory.
    problems: list[str] = []
    config_file: Path | None = None
    if "--config" not in args:
        problems.append("serve without --config")
    else:
        config_path = args[args.index("--config") + 1]
        mounts = [m for m in container.get("volumeMounts", []) if under(config_path, m["mountPath"])]
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        volume = volumes.get(mounts[0]["name"]) if mounts else None
        if not volume or "configMap" not in volume:
            problems.append(f"{config_path} is not on a mounted ConfigMap")
        else:
            if mounts[0].get("subPath"):
                problems.append("the ConfigMap is mounted with subPath, which never updates")
            cm_name = volume["configMap"]["name"]
            file_key = PurePosixPath(config_path).name
            if cm_name in build.generated_configmaps:
                config_file = build.generated_configmaps[cm_name].get(file_key)
            elif cm_name in configmaps:
                data = configmaps[cm_name].get("data", {})
                if file_key in data:
                    config_file = scratch / f"{cm_name}-{file_key}"
                    config_file.write_text(data[file_key])
            if config_file is None:
                problems.append(f"ConfigMap {cm_name} in this build has no file {file_key}")
    report.check(f"--config is a file of a ConfigMap in the build: {name}", problems, rel(config_file) if config_file else "")
    if config_file is None:
        return
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as error:
        report.check(f"configuration is JSON: {rel(config_file)}", [str(error)])
        return

    env = {k: v for k, v in literals.items() if k.startswith("FEDBROKER_")}
    values = effective(flatten(config), env, binary)
    for variable in from_secrets:
        if key_of(binary, variable) == "store.databaseURL":
            env[variable] = DATABASE_URL_STAND_IN
    binary.check_config(report, f"{rel(config_file)} as {name} runs it", config_file, env)

    # Listeners: on every interface, on the container's named ports.
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports", [])}
    problems = []
    for key, port_name in (("server.listen", "framed"), ("admin.listen", "admin")):
        listen = host_port(str(values.get(key, DEFAULTS[key])))
        if key == "admin.listen" and not values.get("admin.staffTenantID"):
            problems.append("admin.staffTenantID is not set, so there is no admin listener for the probes (docs/metrics.md)")
            continue
        if not listen:
            problems.append(f"{key} is not HOST:PORT")
            continue
        if listen[0] in ("127.0.0.1", "localhost", "::1"):
            problems.append(f"{key} {listen[0]} is loopback: the Service and the kubelet cannot reach it")
        if ports.get(port_name) != listen[1]:
            problems.append(f"{key} port {listen[1]} is not container port '{port_name}' ({ports.get(port_name)})")
    report.check(f"listeners match the container ports: {name}", problems)

    # Probes: /livez and /readyz over HTTPS on the admin port.
    problems = []
    for probe, path in (("livenessProbe", "/livez"), ("readinessProbe", "/readyz"), ("startupProbe", "/livez")):
        got = container.get(probe)
        if not got:
            if probe != "startupProbe":
                problems.append(f"no {probe}")
            continue
        http = got.get("httpGet", {})
        if http.get("path") != path or http.get("scheme") != "HTTPS" or not port_matches(http.get("port"), container, "admin"):
            problems.append(f"{probe} is not HTTPS GET {path} on the admin port")
    report.check(f"probes on /livez and /readyz (HTTPS, admin port): {name}", problems)

    # The grace period covers preStop, the drain and the audit flush.
    drain = float(values.get("server.drainSeconds", DEFAULTS["server.drainSeconds"]))
    pre_stop = sleep_seconds(container)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    need = pre_stop + drain + STOP_MARGIN_SECONDS
    report.check(f"terminationGracePeriodSeconds covers preStop + drain + {STOP_MARGIN_SECONDS} s: {name}",
                 [] if grace >= need else [f"{grace} s < {pre_stop:g} + {drain:g} + {STOP_MARGIN_SECONDS}"],
                 f"{grace} s >= {pre_stop:g} + {drain:g} + {STOP_MARGIN_SECONDS}")

    # A read-only root: the data directory and /tmp on volumes; the journal on a persistent one.
    mounts = writable_mounts(obj, template, container)
    data_dir = resolve_in_image(str(values.get("store.dataDir", DEFAULTS["store.dataDir"])))
    journal = as_bool(values.get("audit.journal", True))
    journal_dir = resolve_in_image(str(values.get("audit.journalDirectory", data_dir + "/audit-journal")))
    problems = []
    if not storage_for(data_dir, mounts):
        problems.append(f"store.dataDir {data_dir} is on no writable volume")
    if not storage_for("/tmp", mounts):
        problems.append("/tmp is on no writable volume")
    if journal is None:
        problems.append(f"audit.journal is {values.get('audit.journal')!r}, not a bool")
    elif journal and storage_for(journal_dir, mounts) != "pvc":
        problems.append(f"audit.journal is on but {journal_dir} is on {storage_for(journal_dir, mounts) or 'no volume'}, "
                        "not a PersistentVolume: the journal must outlive the pod (docs/operations.md, \"The audit journal\")")
    if as_bool(values.get("store.migrateOnStart", True)) is not False:
        problems.append("store.migrateOnStart is not false: replicas must not run DDL (the migration Job does)")
    report.check(f"storage: data dir, /tmp, journal, migrations: {name}", problems,
                 f"journal {'on a PersistentVolume' if journal else 'off: every answer waits for the store'}")

    # Workload identity: the label, the service account, the token file, the ISV tenant.
    labels = template.get("metadata", {}).get("labels", {})
    if labels.get("azure.workload.identity/use") == "true":
        problems = []
        account = accounts.get(spec.get("serviceAccountName", "default"))
        client_id = (account or {}).get("metadata", {}).get("annotations", {}).get("azure.workload.identity/client-id")
        if not account:
            problems.append(f"service account {spec.get('serviceAccountName')} is not in the build")
        elif not client_id:
            problems.append("the service account lacks the azure.workload.identity/client-id annotation")
        files_value = str(values.get("slots.tokenFiles", ""))
        pairs = [p.split("=", 1) for p in files_value.split(",") if p.strip()]
        for pair in pairs:
            if len(pair) != 2 or pair[1].strip() != WORKLOAD_IDENTITY_TOKEN:
                problems.append(f"slots.tokenFiles entry {'='.join(pair)} does not name {WORKLOAD_IDENTITY_TOKEN}")
        ids = {p[0].strip().lower() for p in pairs if len(p) == 2}
        if client_id and ids and client_id.lower() not in ids:
            problems.append(f"the service account's client id {client_id} is not among slots.tokenFiles' identities")
        if not (values.get("azure.isvTenantID") or values.get("admin.staffTenantID")):
            problems.append("a token file needs azure.isvTenantID (or admin.staffTenantID): serve refuses to start without it")
        report.check(f"workload identity wiring: {name}", problems, f"{len(ids)} slot identities on the token file")


# --- compose ------------------------------------------------------------------------------------------

def dockerfile_stages(path: Path) -> list[tuple[str, list[str]]]:
    stages: list[tuple[str, list[str]]] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", stripped, re.IGNORECASE)
        if match:
            stages.append((match.group(1) or f"stage-{len(stages)}", []))
        elif stages:
            stages[-1][1].append(stripped)
    return stages


def check_compose(report: Report, binary: Binary, yaml_docs: dict[Path, list[Any]]) -> None:
    path = DEPLOY / "compose.yaml"
    if path not in yaml_docs or not yaml_docs[path]:
        report.check("deploy/compose.yaml", ["missing or empty"])
        return
    compose = yaml_docs[path][0]
    base = path.parent
    for service_name, service in compose.get("services", {}).items():
        name = f"compose service {service_name}"
        problems = []
        binds: dict[str, Path] = {}
        for volume in service.get("volumes", []):
            spec = volume if isinstance(volume, str) else f"{volume.get('source')}:{volume.get('target')}"
            source, _, rest = spec.partition(":")
            if source.startswith((".", "/")):
                target = rest.split(":")[0]
                binds[target] = (base / source).resolve()
                if not binds[target].exists():
                    problems.append(f"bind mount source {source} does not exist")
        build = service.get("build")
        if isinstance(build, dict):
            context = (base / build.get("context", ".")).resolve()
            dockerfile = context / build.get("dockerfile", "Dockerfile")
            if not dockerfile.is_file():
                problems.append(f"build.dockerfile {rel(dockerfile)} does not exist")
            elif build.get("target") and build["target"] not in [s for s, _ in dockerfile_stages(dockerfile)]:
                problems.append(f"build.target {build['target']} is not a stage of {rel(dockerfile)}")
        command = [str(c) for c in (service.get("command") or [])]
        entrypoint = [str(c) for c in (service.get("entrypoint") or [])]
        if command[:1] == ["emulator"] and not service.get("profiles"):
            problems.append("runs the emulator outside a profile")
        if command[:1] == ["emulator"] and (build or {}).get("target") != "dev":
            problems.append("runs the emulator from an image other than the dev stage")

        config_path = None
        if "serve" in command:
            config_path = command[command.index("--config") + 1] if "--config" in command else "/etc/fedbroker/serve.json"
        elif entrypoint and entrypoint[-1] in binds and binds[entrypoint[-1]].is_file():
            script = binds[entrypoint[-1]].read_text()
            match = re.search(r'serve --config "?(?:\$\{\w+:-([^}]+)\}|(\S+?))"?\s*$', script, re.MULTILINE)
            if match:
                config_path = match.group(1) or match.group(2)
        if config_path:
            if (build or {}).get("target") == "dev":
                problems.append("serves from the dev image: the broker runs from the production image")
            if service.get("read_only") is not True:
                problems.append("read_only is not true")
            if "ALL" not in (service.get("cap_drop") or []):
                problems.append("cap_drop lacks ALL")
            environment = service.get("environment") or {}
            if isinstance(environment, list):
                environment = dict(item.split("=", 1) for item in environment)
            env = {k: str(v) for k, v in environment.items() if k.startswith("FEDBROKER_")}
            config_file = binds.get(config_path)
            if not config_file or not config_file.is_file():
                problems.append(f"--config {config_path} is not a bind-mounted file")
            else:
                values = effective(flatten(json.loads(config_file.read_text())), env, binary)
                drain = float(values.get("server.drainSeconds", DEFAULTS["server.drainSeconds"]))
                grace = seconds(service.get("stop_grace_period", "10s"))
                if grace is None or grace < drain + STOP_MARGIN_SECONDS:
                    problems.append(f"stop_grace_period {service.get('stop_grace_period', '10s (default)')} < drain {drain:g} s + {STOP_MARGIN_SECONDS} s")
                binary.check_config(report, f"{rel(config_file)} as {name} runs it", config_file, env)
        report.check(name, problems, f"serves with {config_path}" if config_path else "")


# --- Dockerfile ---------------------------------------------------------------------------------------

def ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics, near enough: the last matching pattern wins, ! re-includes, and a
    pattern that matches a directory covers everything below it."""
    result = False
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip("/")
        if pattern.startswith("**/"):
            candidates = [p for p in prefixes] + ["/".join(parts[i:j]) for i in range(len(parts)) for j in range(i + 1, len(parts) + 1)]
            pattern = pattern[3:]
        else:
            candidates = prefixes
        if any(fnmatch.fnmatchcase(candidate, pattern) for candidate in candidates):
            result = not negate
    return result


def check_dockerfile(report: Report) -> None:
    dockerfile = DEPLOY / "Dockerfile"
    if not dockerfile.is_file():
        report.check("deploy/Dockerfile", ["missing"])
        return
    stages = dockerfile_stages(dockerfile)
    final_name, final = stages[-1]
    problems = []
    if any("fedbroker-dev" in line for line in final):
        problems.append(f"the production stage ({final_name}) mentions fedbroker-dev")
    if any(re.search(r"--from=build-dev\b", line) for line in final):
        problems.append(f"the production stage ({final_name}) copies from build-dev")
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    if not users or not re.fullmatch(r"[1-9]\d*(:\d+)?", users[-1]):
        problems.append("the production stage's USER is not a numeric non-root uid (runAsNonRoot needs one)")
    if not any(line.upper().startswith("HEALTHCHECK") and "/readyz" in line for line in _joined(final)):
        problems.append("no HEALTHCHECK on /readyz")
    if not any(line.upper().startswith("ENTRYPOINT") and "fedbroker" in line for line in final):
        problems.append("ENTRYPOINT is not fedbroker")
    report.check(f"Dockerfile production stage ({final_name}): fedbroker only, non-root, HEALTHCHECK", problems,
                 f"stages {', '.join(s for s, _ in stages)}")

    ignore = DEPLOY / "Dockerfile.dockerignore"
    problems = []
    if (ROOT / ".dockerignore").exists():
        problems.append("a root .dockerignore exists; the context's rules live in deploy/Dockerfile.dockerignore")
    if not ignore.is_file():
        problems.append("deploy/Dockerfile.dockerignore is missing")
    else:
        patterns = [l.strip() for l in ignore.read_text().splitlines() if l.strip() and not l.strip().startswith("#")]
        for path in (".build/release/fedbroker", "Package.resolved", ".git/HEAD", "deploy/compose/tls/server-key.pem",
                     "Sources/fedbroker/.build/x", "x.emu-state/state.json"):
            if not ignored(path, patterns):
                problems.append(f"{path} would be in the build context")
        for path in ("Package.swift", "Sources/fedbroker/ServeCommand.swift", "Tools/fedbroker-dev/x.swift", "Tests/TestSupport/x.swift"):
            if ignored(path, patterns):
                problems.append(f"{path} would be left out of the build context")
    report.check("Dockerfile.dockerignore: Package.swift, Sources/, Tools/, Tests/ in; .build, Package.resolved, keys out", problems)


def _joined(lines: list[str]) -> list[str]:
    """Dockerfile instructions with their backslash continuations joined."""
    out, current = [], ""
    for line in lines:
        current += line.rstrip("\\").strip() + " "
        if not line.endswith("\\"):
            out.append(current.strip())
            current = ""
    return out + ([current.strip()] if current else [])


# --- systemd ------------------------------------------------------------------------------------------

def parse_unit(path: Path) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            current = stripped[1:-1]
            sections.setdefault(current, [])
        elif "=" in stripped and current:
            key, _, value = stripped.partition("=")
            sections[current].append((key.strip(), value.strip()))
    return sections


def check_systemd(report: Report, binary: Binary) -> None:
    for unit in files("*.service"):
        name = rel(unit)
        service = dict(parse_unit(unit).get("Service", []))
        problems = []
        command = shlex.split(service.get("ExecStart", ""))
        config_file = None
        if len(command) < 2 or command[1] != "serve" or not command[0].endswith("/fedbroker"):
            problems.append("ExecStart is not fedbroker serve")
        elif "--config" not in command:
            problems.append("ExecStart has no --config")
        else:
            config_file = unit.parent / PurePosixPath(command[command.index("--config") + 1]).name
            if not config_file.is_file():
                problems.append(f"no example configuration {rel(config_file)} beside the unit")
                config_file = None
        env: dict[str, str] = {}
        env_file = service.get("EnvironmentFile", "").lstrip("-")
        if env_file:
            example = unit.parent / (PurePosixPath(env_file).name + ".example")
            if not example.is_file():
                problems.append(f"no example {rel(example)} for EnvironmentFile={env_file}")
            else:
                for line in example.read_text().splitlines():
                    if "=" in line and not line.lstrip().startswith("#"):
                        key, _, value = line.partition("=")
                        env[key.strip()] = value.strip()
        for key, wanted in (("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("LimitCORE", "0"), ("PrivateTmp", "yes"),
                            ("ProtectHome", "yes"), ("CapabilityBoundingSet", "")):
            if service.get(key) != wanted:
                problems.append(f"{key}={wanted} is missing (found {service.get(key)!r})")
        if not (service.get("DynamicUser") == "yes" or service.get("User") not in (None, "", "root", "0")):
            problems.append("runs as root: set User= or DynamicUser=yes")
        values: dict[str, Any] = {}
        if config_file:
            values = effective(flatten(json.loads(config_file.read_text())), {k: v for k, v in env.items() if k.startswith("FEDBROKER_")}, binary)
            state = service.get("StateDirectory")
            data_dir = resolve_in_image(str(values.get("store.dataDir", DEFAULTS["store.dataDir"])))
            if not state or data_dir != f"/var/lib/{state.split()[0]}":
                problems.append(f"store.dataDir {data_dir} is not the StateDirectory (/var/lib/{state})")
            journal_dir = str(values.get("audit.journalDirectory", data_dir + "/audit-journal"))
            if as_bool(values.get("audit.journal", True)) and not under(journal_dir, data_dir):
                problems.append(f"the journal {journal_dir} is outside the StateDirectory")
            drain = float(values.get("server.drainSeconds", DEFAULTS["server.drainSeconds"]))
            stop = seconds(service.get("TimeoutStopSec", "90"))
            if stop is None or stop < drain + STOP_MARGIN_SECONDS:
                problems.append(f"TimeoutStopSec {service.get('TimeoutStopSec')} < drain {drain:g} s + {STOP_MARGIN_SECONDS} s")
        report.check(f"systemd unit {name}: serve, hardening, state directory, stop timeout", problems,
                     f"TimeoutStopSec={service.get('TimeoutStopSec')}")
        if config_file:
            binary.check_config(report, f"{rel(config_file)} as {name} runs it", config_file,
                                {k: v for k, v in env.items() if k.startswith("FEDBROKER_")})
        analyze = shutil.which("systemd-analyze")
        if not analyze:
            report.skip(f"systemd-analyze verify {name}", "systemd-analyze is not on PATH")
            continue
        with tempfile.TemporaryDirectory() as scratch:
            copy_path = Path(scratch) / unit.name
            text = unit.read_text().replace(command[0], str(binary.path.resolve())) if command else unit.read_text()
            copy_path.write_text(text)
            result = subprocess.run([analyze, "verify", str(copy_path)], capture_output=True, text=True, timeout=60, cwd=scratch)
            lines = [l for l in (result.stderr + result.stdout).splitlines() if l.strip()]
            report.check(f"systemd-analyze verify {name}", [] if result.returncode == 0 and not lines else lines[:5] or [f"exit {result.returncode}"])


# --- Terraform ----------------------------------------------------------------------------------------

META_ARGUMENTS = {"source", "version", "providers", "count", "for_each", "depends_on"}


def unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def blocks(parsed: dict, kind: str) -> Iterable[tuple[str, dict]]:
    """(label, body) for blocks with one label (variable, output, module, provider)."""
    for entry in parsed.get(kind, []):
        for label, body in entry.items():
            if label != "__is_block__":
                yield unquote(label), body


def two_label_blocks(parsed: dict, kind: str) -> Iterable[tuple[str, str]]:
    for entry in parsed.get(kind, []):
        for type_label, inner in entry.items():
            if type_label == "__is_block__" or not isinstance(inner, dict):
                continue
            for name_label in inner:
                if name_label != "__is_block__":
                    yield unquote(type_label), unquote(name_label)


def strip_meta(value: Any) -> Any:
    """python-hcl2's output without its own keys (__is_block__, __comments__): comments must not
    count as uses of a variable or references to a resource."""
    if isinstance(value, dict):
        return {k: strip_meta(v) for k, v in value.items() if not (isinstance(k, str) and k.startswith("__"))}
    if isinstance(value, list):
        return [strip_meta(v) for v in value]
    return value


def load_module(directory: Path) -> tuple[dict[str, list], list[str]]:
    merged: dict[str, list] = {}
    problems = []
    for path in sorted(directory.glob("*.tf")):
        try:
            with path.open() as handle:
                parsed = strip_meta(hcl2.load(handle))
        except Exception as error:  # lark raises many kinds
            problems.append(f"{rel(path)} does not parse: {str(error).splitlines()[0][:200]}")
            continue
        for kind, entries in parsed.items():
            merged.setdefault(kind, []).extend(entries if isinstance(entries, list) else [entries])
    return merged, problems


def check_terraform(report: Report) -> None:
    tf_root = DEPLOY / "terraform"
    directories = sorted({p.parent for p in tf_root.rglob("*.tf")})
    modules: dict[Path, dict] = {}
    for directory in directories:
        parsed, problems = load_module(directory)
        modules[directory] = parsed
        report.check(f"Terraform parses: {rel(directory)}", problems, f"{len(list(directory.glob('*.tf')))} file(s)")

    for directory, parsed in modules.items():
        label = rel(directory)
        reusable = "examples" not in directory.relative_to(tf_root).parts
        if reusable:
            missing = [f for f in ("variables.tf", "main.tf", "outputs.tf", "versions.tf") if not (directory / f).is_file()]
            report.check(f"module layout: {label}", [f"{f} is missing" for f in missing])

        # Providers: every one with a source and a version bounded above; Terraform's own version too.
        problems = []
        providers: dict[str, dict] = {}
        required_version = None
        for terraform in parsed.get("terraform", []):
            required_version = required_version or unquote(terraform.get("required_version"))
            for entry in terraform.get("required_providers", []):
                for local, spec in entry.items():
                    if local != "__is_block__":
                        providers[local] = {k: unquote(v) for k, v in spec.items()}
        if not required_version or not re.search(r"<|~>", str(required_version)):
            problems.append(f"required_version {required_version!r} has no upper bound")
        if not providers:
            problems.append("no required_providers")
        for local, spec in providers.items():
            if not spec.get("source"):
                problems.append(f"provider {local} has no source")
            if not re.search(r"<|~>|^=|^\d", str(spec.get("version", ""))):
                problems.append(f"provider {local} version {spec.get('version')!r} has no upper bound")
        report.check(f"providers pinned: {label}", problems, ", ".join(f"{k} {v.get('version')}" for k, v in providers.items()))

        # Names declared here, and every reference to them.
        variables = dict(blocks(parsed, "variable"))
        local_names = {k for entry in parsed.get("locals", []) for k in entry if k != "__is_block__"}
        resources = set(two_label_blocks(parsed, "resource"))
        data = set(two_label_blocks(parsed, "data"))
        module_calls = dict(blocks(parsed, "module"))
        text = "\n".join(walk_strings({k: v for k, v in parsed.items()}))
        prefixes = tuple(f"{p}_" for p in providers) or ("azurerm_", "azuread_")

        used_vars = set(re.findall(r"\bvar\.([A-Za-z_][\w-]*)", text))
        problems = [f"var.{v} is used but not declared" for v in sorted(used_vars - set(variables))]
        problems += [f"variable {v} is declared but never used" for v in sorted(set(variables) - used_vars)]
        if reusable:
            for name, body in variables.items():
                if "type" not in body or "description" not in body:
                    problems.append(f"variable {name} lacks a type or a description")
        report.check(f"variables declared and used: {label}", problems, f"{len(variables)} variables")

        problems = []
        for name in sorted(set(re.findall(r"\blocal\.([A-Za-z_][\w-]*)", text)) - local_names):
            problems.append(f"local.{name} is not declared")
        for kind, name in sorted(set(re.findall(r"(?<![\w.])data\.([a-z][a-z0-9_]*)\.([A-Za-z_][\w-]*)", text)) - data):
            problems.append(f"data.{kind}.{name} is not declared")
        for kind, name in sorted(set(re.findall(r"(?<![\w.])([a-z][a-z0-9]*_[a-z0-9_]+)\.([A-Za-z_][\w-]*)", text)) - resources):
            if kind.startswith(prefixes):
                problems.append(f"{kind}.{name} is not declared")
        for name in sorted(set(re.findall(r"(?<![\w.])module\.([A-Za-z_][\w-]*)", text)) - set(module_calls)):
            problems.append(f"module.{name} is not declared")
        outputs = dict(blocks(parsed, "output"))
        for name, body in outputs.items():
            if "value" not in body:
                problems.append(f"output {name} has no value")
            if reusable and "description" not in body:
                problems.append(f"output {name} has no description")
        report.check(f"references resolve (resources, data, locals, modules, outputs): {label}", problems,
                     f"{len(resources)} resources, {len(data)} data sources, {len(outputs)} outputs")

        # Module calls against the child's variables.
        for call, body in module_calls.items():
            problems = []
            source = unquote(body.get("source", ""))
            child_dir = (directory / source).resolve()
            if not source.startswith(".") or child_dir not in modules:
                problems.append(f"source {source!r} is not a module under deploy/terraform")
            else:
                child_vars = dict(blocks(modules[child_dir], "variable"))
                given = {k for k in body if k not in META_ARGUMENTS and k != "__is_block__"}
                problems += [f"argument {a} is not a variable of {source}" for a in sorted(given - set(child_vars))]
                problems += [f"required variable {v} of {source} is not given" for v, spec in sorted(child_vars.items())
                             if "default" not in spec and v not in given]
            report.check(f"module {call} arguments match {source}: {label}", problems)

    terraform = shutil.which("terraform")
    if not terraform:
        report.skip("terraform fmt -check", "terraform is not on PATH")
        return
    result = subprocess.run([terraform, "fmt", "-check", "-recursive", "-list=true", str(tf_root)], capture_output=True, text=True, timeout=120)
    report.check("terraform fmt -check -recursive deploy/terraform",
                 [] if result.returncode == 0 else [f"not formatted: {result.stdout.strip()}"] if result.stdout.strip() else [result.stderr.strip()[:300]])


# --- main ---------------------------------------------------------------------------------------------

def main() -> int:
    global DEPLOY, DOCS_DEPLOY
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fedbroker", required=True, type=Path, help="the fedbroker binary (for --list-config-keys and --check-config)")
    parser.add_argument("--deploy-dir", type=Path, default=DEPLOY, help=argparse.SUPPRESS)
    options = parser.parse_args()
    DEPLOY = options.deploy_dir.resolve()
    DOCS_DEPLOY = DEPLOY.parent / "docs" / "deploy.md"
    if not options.fedbroker.is_file() or not os.access(options.fedbroker, os.X_OK):
        print(f"deploy-check: {options.fedbroker} is not an executable file", file=sys.stderr)
        return 2
    if not DEPLOY.is_dir():
        print(f"deploy-check: {DEPLOY} is not a directory", file=sys.stderr)
        return 2

    report = Report()
    with tempfile.TemporaryDirectory(prefix="deploy-check.") as scratch_name:
        scratch = Path(scratch_name)
        binary = Binary(options.fedbroker.resolve(), scratch)
        binary.list_keys(report)
        docs_text = DOCS_DEPLOY.read_text() if DOCS_DEPLOY.is_file() else ""
        report.check("docs/deploy.md exists", [] if docs_text else [f"{rel(DOCS_DEPLOY)} is missing"])

        yaml_docs = check_yaml(report)
        for path in files("*.json"):
            try:
                config = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                report.check(f"JSON parses: {rel(path)}", [str(error)])
                continue
            check_config_keys(report, binary, rel(path), config)
        for path, docs in sorted(yaml_docs.items()):
            for doc in docs:
                if isinstance(doc, dict) and doc.get("kind") == "ConfigMap":
                    for key, value in (doc.get("data") or {}).items():
                        if key.endswith(".json"):
                            check_config_keys(report, binary, f"{rel(path)} ConfigMap {doc['metadata']['name']} {key}", json.loads(value))
        check_variables(report, binary, yaml_docs)
        check_kubernetes(report, binary, yaml_docs, docs_text, scratch)
        check_compose(report, binary, yaml_docs)
        check_dockerfile(report)
        check_systemd(report, binary)
        check_terraform(report)

    if report.skipped:
        print(f"deploy-check: {report.skipped} skipped (a tool not on PATH)")
    print(f"deploy-check: {report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
