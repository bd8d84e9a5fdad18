// Plain-text tables for the CLI's default output: columns padded to their widest cell.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

namespace kvm_amf::cli {

class Table {
 public:
  explicit Table(std::vector<std::string> header) : header_(std::move(header)) {}
  // REQUIRES: row has as many cells as the header.
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print(std::ostream& out) const;

 private:
  std::vector<std::string> header_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace kvm_amf::cli
