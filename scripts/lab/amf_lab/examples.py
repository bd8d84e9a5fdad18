"""examples/lab/ as tests and benchmarks run it: the same documents with the guest image, the
consoles and the disks moved into their own directory."""
import os
import re

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLES = os.path.join(SOURCE, "examples", "lab")


def relocate_text(text, directory, image):
    """The lab's paths in a configuration moved: the guest image to `image`, consoles and disks
    under `directory`."""
    return (text.replace("/var/lib/kvm-amf/images", image)
            .replace("/var/log/kvm-amf", os.path.join(directory, "consoles"))
            .replace("/var/lib/kvm-amf/shared", os.path.join(directory, "shared")))


def relocated(directory, image, names=("cluster.yaml", "sg-mme.yaml", "sg-oam.yaml")):
    """Writes the example files into `directory` with their paths moved; returns the new paths."""
    files = []
    for name in names:
        with open(os.path.join(EXAMPLES, name)) as f:
            text = relocate_text(f.read(), directory, image)
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text)
        files.append(path)
    return files


def relocated_scenario(path, directory, image):
    """A copy of the scenario at `path` in `directory`, its configuration files relocated as above (its
    `config:` is one line, `config: [FILE, ...]`); returns the copy's path. Files its steps apply
    (apply: FILE) are relocated into `directory` too."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path) as f:
        text = f.read()
    match = re.search(r"^config:\s*\[(.*)\]\s*$", text, re.M)
    if not match:
        raise ValueError("%s: expected a one-line config: [FILE, ...]" % path)
    configs = [os.path.normpath(os.path.join(base, c.strip())) for c in match.group(1).split(",")]
    os.makedirs(directory, exist_ok=True)
    moved = []
    for config in configs:
        with open(config) as f:
            content = relocate_text(f.read(), directory, image)
        target = os.path.join(directory, "%02d-%s" % (len(moved), os.path.basename(config)))
        with open(target, "w") as f:
            f.write(content)
        moved.append(target)

    def copy_applied(m):
        name = m.group(2).strip("\"'")
        target = os.path.join(directory, "applied-" + os.path.basename(name))
        with open(os.path.join(base, name)) as f:
            content = relocate_text(f.read(), directory, image)
        with open(target, "w") as f:
            f.write(content)
        return m.group(1) + target

    text = re.sub(r"(apply:\s*)([^\s},]+)", copy_applied, text)
    match = re.search(r"^config:\s*\[(.*)\]\s*$", text, re.M)
    text = text[:match.start()] + "config: [%s]" % ", ".join(moved) + text[match.end():]
    copy = os.path.join(directory, os.path.basename(path))
    with open(copy, "w") as f:
        f.write(text)
    return copy
