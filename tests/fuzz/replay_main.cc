// Replays a fuzz target's inputs without libFuzzer: runs LLVMFuzzerTestOneInput on every regular
// file of the directories (and on the files) given on the command line, in name order. This is
// how the test suite replays each target's corpus, kept crash inputs included, in the ordinary
// build (docs/TESTING.md). A finding aborts the process; the last "replay" line names the input.

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  namespace fs = std::filesystem;
  if (argc < 2) {
    std::cerr << "usage: " << argv[0] << " CORPUS_DIR_OR_FILE...\n";
    return 2;
  }
  std::vector<fs::path> inputs;
  for (int i = 1; i < argc; ++i) {
    fs::path arg = argv[i];
    if (fs::is_directory(arg)) {
      std::vector<fs::path> files;
      for (const auto& entry : fs::directory_iterator(arg)) {
        if (entry.is_regular_file()) files.push_back(entry.path());
      }
      std::sort(files.begin(), files.end());
      inputs.insert(inputs.end(), files.begin(), files.end());
    } else if (fs::is_regular_file(arg)) {
      inputs.push_back(arg);
    } else {
      std::cerr << arg << " is neither a file nor a directory\n";
      return 2;
    }
  }
  // An empty corpus would make the replay pass without testing anything.
  if (inputs.empty()) {
    std::cerr << "no inputs to replay\n";
    return 1;
  }
  for (const fs::path& path : inputs) {
    std::cout << "replay " << path.string() << std::endl;
    std::ifstream in(path, std::ios::binary);
    std::ostringstream bytes;
    if (!(bytes << in.rdbuf()) && fs::file_size(path) != 0) {
      std::cerr << "cannot read " << path << "\n";
      return 2;
    }
    const std::string data = bytes.str();
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(data.data()), data.size());
  }
  std::cout << "replayed " << inputs.size() << " inputs\n";
  return 0;
}
