// Overloaded{lambdas...}: one visitor for std::visit made of several lambdas.
#pragma once

namespace kvm_amf {

template <class... F>
struct Overloaded : F... {
  using F::operator()...;
};
template <class... F>
Overloaded(F...) -> Overloaded<F...>;

}  // namespace kvm_amf
