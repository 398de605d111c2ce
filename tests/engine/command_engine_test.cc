// The command engine's configuration: --engine flags, engines files, and their checks. Running
// programs is covered under a real worker (tests/lifecycle/command_engine_test.cc) and end to
// end (tests/cli/test_command_engines.py).

#include "btstore/command_engine.h"

#include <gtest/gtest.h>

#include <fstream>

#include "btstore/errors.h"
#include "support/temp_dir.h"

namespace btstore::testing {
namespace {

std::string WriteFile(const TempDir& dir, const std::string& name, const std::string& text) {
  const std::filesystem::path path = dir.path() / name;
  std::ofstream(path) << text;
  return path.string();
}

TEST(CommandEngineFlag, RunsTheCommandWithTheShell) {
  CommandEngineSpec spec = ParseEngineFlag("momentum = python3 momentum.py --fast ");
  EXPECT_EQ(spec.name, "momentum");
  EXPECT_EQ(spec.argv, (std::vector<std::string>{"/bin/sh", "-c", "python3 momentum.py --fast"}));
  EXPECT_EQ(spec.grace, kDefaultEngineGrace);
  EXPECT_EQ(spec.log_limit_bytes, kDefaultEngineLogLimit);
  EXPECT_EQ(ParseEngineFlag("r=Rscript a.R x=1").argv.back(), "Rscript a.R x=1");
}

TEST(CommandEngineFlag, RefusesMalformedFlags) {
  for (const std::string& flag :
       {std::string("momentum"), std::string("=python3 x.py"), std::string("bad name=true"),
        std::string("x="), std::string("x=   "), std::string(65, 'n') + "=true"}) {
    EXPECT_THROW(ParseEngineFlag(flag), InvalidArgument) << flag;
  }
}

TEST(EnginesFile, ReadsEveryFieldAndResolvesTheWorkingDirectory) {
  TempDir dir;
  const std::string path = WriteFile(dir, "engines.json", R"({"engines": [
      {"name": "a", "argv": ["python3", "a.py"], "working_dir": "sub/../work",
       "env": {"K": "v"}, "grace_seconds": 2.5, "log_limit_bytes": 65536},
      {"name": "b", "command": "Rscript b.R"}]})");
  std::vector<CommandEngineSpec> specs = LoadEnginesFile(path);
  ASSERT_EQ(specs.size(), 2u);
  EXPECT_EQ(specs[0].name, "a");
  EXPECT_EQ(specs[0].argv, (std::vector<std::string>{"python3", "a.py"}));
  EXPECT_EQ(specs[0].working_dir, (std::filesystem::absolute(dir.path()) / "work").string());
  EXPECT_EQ(specs[0].env.at("K"), "v");
  EXPECT_EQ(specs[0].grace, std::chrono::milliseconds(2500));
  EXPECT_EQ(specs[0].log_limit_bytes, 65536);
  EXPECT_EQ(specs[1].argv, (std::vector<std::string>{"/bin/sh", "-c", "Rscript b.R"}));
  EXPECT_TRUE(specs[1].working_dir.empty());
}

TEST(EnginesFile, RefusesWhatItCannotRunNamingTheEntry) {
  TempDir dir;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "expected a JSON object"},
      {R"({"engines": {}})", "expected a JSON object"},
      {R"({"engines": [1]})", "engine #1 is not an object"},
      {R"({"engines": [{"command": "x"}]})", "needs a string \"name\""},
      {R"({"engines": [{"name": "a"}]})", "exactly one of"},
      {R"({"engines": [{"name": "a", "argv": "x"}]})", "array of strings"},
      {R"({"engines": [{"name": "a", "argv": []}]})", "no program"},
      {R"({"engines": [{"name": "a", "command": "x", "env": {"K": 1}}]})", "object of strings"},
      {R"({"engines": [{"name": "a", "command": "x", "env": {"A=B": "1"}}]})", "environment"},
      {R"({"engines": [{"name": "a", "command": "x", "grace_seconds": 7200}]})", "0 to 3600"},
      {R"({"engines": [{"name": "a", "command": "x", "log_limit_bytes": 10}]})", "log_limit"},
      {R"({"engines": [{"name": "a", "command": "x", "shell": true}]})", "unknown key \"shell\""},
      {R"({"engines": [{"name": "a b", "command": "x"}]})", "engine name"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const std::string path = WriteFile(dir, "e" + std::to_string(i) + ".json", cases[i].first);
    try {
      LoadEnginesFile(path);
      ADD_FAILURE() << "accepted " << cases[i].first;
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find(cases[i].second), std::string::npos)
          << cases[i].first << " -> " << e.what();
      EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(LoadEnginesFile((dir.path() / "missing.json").string()), InvalidArgument);
}

TEST(CommandEngineRegistry, RegistersByNameBesideTheBuiltins) {
  EngineRegistry engines = EngineRegistry::Builtins();
  RegisterCommandEngine(engines, ParseEngineFlag("momentum=true"));
  EXPECT_EQ(engines.Names(), (std::vector<std::string>{"momentum", "noop", "synthetic"}));
  EXPECT_NE(engines.MakeFor(R"({"engine":"momentum"})"), nullptr);
  EXPECT_THROW(RegisterCommandEngine(engines, ParseEngineFlag("momentum=false")), InvalidArgument);
  EXPECT_THROW(RegisterCommandEngine(engines, ParseEngineFlag("noop=true")), InvalidArgument);
  CommandEngineSpec no_program;
  no_program.name = "empty";
  EXPECT_THROW(RegisterCommandEngine(engines, no_program), InvalidArgument);
}

}  // namespace
}  // namespace btstore::testing
