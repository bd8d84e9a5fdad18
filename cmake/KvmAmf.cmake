# Project-wide build rules: warnings as errors on our own targets only, optional sanitizers.

if(KVM_AMF_SANITIZE)
  add_compile_options(-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=address,undefined)
endif()

if(KVM_AMF_FUZZ)
  # Coverage feedback from every library the fuzz targets reach; the targets link libFuzzer.
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

# kvm_amf_target_options(TARGET): the flags every target of ours builds with.
function(kvm_amf_target_options target)
  target_compile_options(${target} PRIVATE -Wall -Wextra -Werror -Wshadow -Wnon-virtual-dtor)
endfunction()

# kvm_amf_library(NAME SOURCES...): one part = one library; public headers in the folder's include/.
function(kvm_amf_library name)
  add_library(${name} STATIC ${ARGN})
  target_include_directories(${name} PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include PRIVATE ${CMAKE_CURRENT_SOURCE_DIR})
  kvm_amf_target_options(${name})
endfunction()
