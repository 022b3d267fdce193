// docs/modules.md is a guide to examples/write_a_model.cpp: every ```cpp block in the guide
// must be one of the program's "// [guide:name]" ... "// [/guide]" sections, verbatim up to
// indentation, and every section must appear in the guide. (CTest runs the program itself:
// examples.write_a_model.)
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

namespace {

const std::filesystem::path kRoot(NORMGRAD_SOURCE_DIR);

std::vector<std::string> lines_of(const std::filesystem::path& p) {
  std::ifstream f(p);
  REQUIRE_MESSAGE(f, "cannot read " << p);
  std::vector<std::string> out;
  for (std::string line; std::getline(f, line);) out.push_back(line);
  return out;
}

// The lines without their common leading spaces, joined with '\n'.
std::string dedent(const std::vector<std::string>& lines) {
  std::size_t common = std::string::npos;
  for (const auto& l : lines)
    if (l.find_first_not_of(' ') != std::string::npos) common = std::min(common, l.find_first_not_of(' '));
  std::string s;
  for (const auto& l : lines) s += (l.size() >= common ? l.substr(common) : std::string()) + "\n";
  return s;
}

std::string trim(const std::string& s) {
  const auto a = s.find_first_not_of(' ');
  return a == std::string::npos ? std::string() : s.substr(a);
}

}  // namespace

TEST_CASE("docs/modules.md: every code block is a section of examples/write_a_model.cpp, and vice versa") {
  std::map<std::string, std::string> sections;
  {
    const auto src = lines_of(kRoot / "examples" / "write_a_model.cpp");
    std::string name;
    std::vector<std::string> body;
    for (const auto& l : src) {
      const std::string t = trim(l);
      if (t.starts_with("// [guide:")) {
        REQUIRE(name.empty());
        name = t.substr(10, t.find(']') - 10);
        body.clear();
      } else if (t == "// [/guide]") {
        REQUIRE_FALSE(name.empty());
        sections[name] = dedent(body);
        name.clear();
      } else if (!name.empty()) {
        body.push_back(l);
      }
    }
    CHECK(name.empty());
  }
  REQUIRE(sections.size() >= 6);

  std::vector<std::string> blocks;
  {
    const auto doc = lines_of(kRoot / "docs" / "modules.md");
    bool in = false;
    std::vector<std::string> body;
    for (const auto& l : doc) {
      if (!in && l == "```cpp") {
        in = true;
        body.clear();
      } else if (in && l == "```") {
        in = false;
        blocks.push_back(dedent(body));
      } else if (in) {
        body.push_back(l);
      }
    }
    CHECK_FALSE(in);
  }
  std::map<std::string, int> used;
  for (const auto& b : blocks) {
    bool found = false;
    for (const auto& [name, s] : sections)
      if (s == b) {
        found = true;
        ++used[name];
      }
    CHECK_MESSAGE(found, "docs/modules.md has a code block that is not a section of examples/write_a_model.cpp:\n"
                             << b);
  }
  for (const auto& [name, s] : sections)
    CHECK_MESSAGE(used[name] == 1, "section '" << name << "' is not in docs/modules.md once");
}
