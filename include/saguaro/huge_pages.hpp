// Weights on 2 MiB pages. A decode streams every weight byte once per token (about 1 GB for the quantized
// 1.5B target); on 4 KiB pages that is a page walk for every 4 KiB it reads. Transparent huge pages in
// the kernel's "madvise" mode (a common default) back only the memory a process asks for.
#pragma once

#include <cstddef>

namespace saguaro {

constexpr size_t kHugePageBytes = size_t{2} << 20;

// Asks the kernel to back the whole 2 MiB pages inside [data, data + bytes) with transparent huge
// pages (madvise MADV_HUGEPAGE). Call it before the memory is first written: pages already faulted in
// stay small until the kernel's background collapse gets to them. Returns the bytes advised: 0 where
// none fits, off Linux, or when the kernel refuses (built without transparent huge pages: nothing
// changes). Whether the pages then are huge is the kernel's call: its mode (/sys/kernel/mm/
// transparent_hugepage/enabled, "never" ignores the advice) and how much contiguous memory it has free.
size_t advise_huge_pages(void* data, size_t bytes);

}  // namespace saguaro
