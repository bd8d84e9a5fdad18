"""examples/lab/ as tests and benchmarks run it: the same documents with the guest image, the
consoles and the disks moved into their own directory."""
import os

SOURCE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
EXAMPLES = os.path.join(SOURCE, "examples", "lab")


def relocated(directory, image, names=("cluster.yaml", "sg-mme.yaml", "sg-oam.yaml")):
    """Writes the example files into `directory` with their paths moved; returns the new paths."""
    files = []
    for name in names:
        with open(os.path.join(EXAMPLES, name)) as f:
            text = f.read()
        text = (text.replace("/var/lib/kvm-amf/images", image)
                .replace("/var/log/kvm-amf", os.path.join(directory, "consoles"))
                .replace("/var/lib/kvm-amf/shared", os.path.join(directory, "shared")))
        path = os.path.join(directory, name)
        with open(path, "w") as f:
            f.write(text)
        files.append(path)
    return files
