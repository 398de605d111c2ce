#include "btstore/bundle.h"
#include "btstore/errors.h"

namespace btstore {

Compression ParseCompression(std::string_view text) {
  if (text == "snappy") return Compression::kSnappy;
  if (text == "zstd") return Compression::kZstd;
  throw InvalidArgument("unknown compression '" + std::string(text) + "': expected snappy or zstd",
                        {{"field", "compression"}, {"value", std::string(text)}});
}

std::string_view ToString(Compression compression) {
  return compression == Compression::kZstd ? "zstd" : "snappy";
}

}  // namespace btstore
