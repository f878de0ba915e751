// Command modproxy writes a file-based module proxy (the directory that
// GOPROXY=file://DIR reads) serving every module of this repository at one
// version, as if the checkout were tagged and published. The release
// rehearsal (.ci/release-rehearsal) installs from it.
//
//	go run ./.ci/modproxy -version v0.3.0 -out DIR
//
// For each go.mod in the checkout it writes DIR/MODULE/@v/VERSION.info,
// VERSION.mod, VERSION.zip and a list naming VERSION. The zip holds what the
// go command would put in it from a tag: the files git knows (committed, or
// new and not ignored; so a rehearsal before a commit sees the commit), each
// under MODULE@VERSION/, without the subtrees of nested modules, vendored
// packages or symbolic links, and with the repository's LICENSE added to a
// nested module that has none. The go command checks the remaining rules
// (file names, sizes, case collisions) when it extracts the zip, so a module
// that breaks them fails the rehearsal there.
//
// Only the standard library, so that it runs without downloading anything
// and adds nothing to the root module's requirements.
package main

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
	"unicode"
)

func main() {
	repo := flag.String("repo", ".", "root of the checkout")
	version := flag.String("version", "", "version to publish every module at, such as v0.3.0")
	out := flag.String("out", "", "proxy directory to write (GOPROXY=file://DIR)")
	flag.Parse()
	if *version == "" || *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*repo, *version, *out); err != nil {
		fmt.Fprintln(os.Stderr, "modproxy:", err)
		os.Exit(1)
	}
}

// semver is a release or pre-release version the go command accepts as
// canonical; build metadata (+...) is not.
var semver = regexp.MustCompile(`^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z.-]+)?$`)

func run(repo, version, out string) error {
	if !semver.MatchString(version) {
		return fmt.Errorf("version %q is not a canonical semantic version like v0.3.0", version)
	}
	files, err := gitFiles(repo)
	if err != nil {
		return err
	}
	mods, err := modules(repo, files)
	if err != nil {
		return err
	}
	if len(mods) == 0 {
		return errors.New("no go.mod in the checkout")
	}
	when, err := commitTime(repo)
	if err != nil {
		return err
	}
	dirs := make([]string, 0, len(mods))
	for dir := range mods {
		dirs = append(dirs, dir)
	}
	slices.Sort(dirs)
	for _, dir := range dirs {
		n, err := publish(repo, dir, out, mods[dir], version, when, contents(dir, files, mods))
		if err != nil {
			return fmt.Errorf("%s@%s: %w", mods[dir], version, err)
		}
		fmt.Printf("%s@%s: %d files\n", mods[dir], version, n)
	}
	return nil
}

// gitFiles lists the checkout's files, slash-separated and relative to repo,
// as git sees them: tracked, or untracked and not ignored. Files deleted from
// the work tree, and anything but regular files (symbolic links, which module
// zips never hold), are left out.
func gitFiles(repo string) ([]string, error) {
	cmd := exec.Command("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
	cmd.Dir = repo
	cmd.Stderr = os.Stderr
	raw, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("git ls-files in %s: %w", repo, err)
	}
	var files []string
	for _, f := range strings.Split(string(raw), "\x00") {
		if f == "" {
			continue
		}
		info, err := os.Lstat(filepath.Join(repo, filepath.FromSlash(f)))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if info.Mode().IsRegular() {
			files = append(files, f)
		}
	}
	slices.Sort(files)
	return slices.Compact(files), nil
}

// modules maps the directory of every go.mod ("" for the root) to the
// module path it declares.
func modules(repo string, files []string) (map[string]string, error) {
	mods := make(map[string]string)
	for _, f := range files {
		if path.Base(f) != "go.mod" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(repo, filepath.FromSlash(f)))
		if err != nil {
			return nil, err
		}
		mp, err := modulePath(data)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		dir := path.Dir(f)
		if dir == "." {
			dir = ""
		}
		mods[dir] = mp
	}
	return mods, nil
}

// modulePath reads the module directive of a go.mod file.
func modulePath(gomod []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if i := strings.Index(line, "//"); i >= 0 {
			line = strings.TrimSpace(line[:i])
		}
		rest, ok := strings.CutPrefix(line, "module")
		if !ok || rest == "" || !unicode.IsSpace(rune(rest[0])) {
			continue
		}
		return strings.Trim(strings.TrimSpace(rest), `"`), nil
	}
	return "", errors.New("no module directive")
}

// contents lists the files of the module in dir, relative to dir: every file
// below it whose nearest enclosing go.mod is dir's, less vendored packages.
func contents(dir string, files []string, mods map[string]string) []string {
	var in []string
	for _, f := range files {
		if owner(f, mods) != dir {
			continue
		}
		rel := f
		if dir != "" {
			rel = strings.TrimPrefix(f, dir+"/")
		}
		if vendored(rel) || rel == ".hg_archival.txt" {
			continue
		}
		in = append(in, rel)
	}
	return in
}

// owner is the directory of the module that holds file f: the deepest
// directory above f with a go.mod.
func owner(f string, mods map[string]string) string {
	for d := path.Dir(f); ; d = path.Dir(d) {
		if d == "." {
			d = ""
		}
		if _, ok := mods[d]; ok {
			return d
		}
		if d == "" {
			return "-" // outside every module
		}
	}
}

// vendored reports whether a module zip leaves the file out as part of a
// vendored package, by the rule for modules at go 1.24 and later (this
// repository's): vendor/modules.txt and any file in a directory below a
// vendor directory.
func vendored(rel string) bool {
	if rel == "vendor/modules.txt" {
		return true
	}
	var rest string
	if r, ok := strings.CutPrefix(rel, "vendor/"); ok {
		rest = r
	} else if i := strings.Index(rel, "/vendor/"); i >= 0 {
		rest = rel[i+len("/vendor/"):]
	} else {
		return false
	}
	return strings.Contains(rest, "/")
}

// commitTime is the time of the checkout's HEAD commit, which stands for the
// time of the tag in the .info files.
func commitTime(repo string) (time.Time, error) {
	cmd := exec.Command("git", "log", "-1", "--format=%cI", "HEAD")
	cmd.Dir = repo
	cmd.Stderr = os.Stderr
	raw, err := cmd.Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("git log in %s: %w", repo, err)
	}
	return time.Parse(time.RFC3339, strings.TrimSpace(string(raw)))
}

// publish writes the module in the checkout's directory dir into the proxy
// and returns how many files its zip holds.
func publish(repo, dir, out, modPath, version string, when time.Time, files []string) (int, error) {
	at := filepath.Join(out, filepath.FromSlash(escape(modPath)), "@v")
	if err := os.MkdirAll(at, 0o755); err != nil {
		return 0, err
	}
	src := filepath.Join(repo, filepath.FromSlash(dir))
	base := filepath.Join(at, escape(version))

	gomod, err := os.ReadFile(filepath.Join(src, "go.mod"))
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(base+".mod", gomod, 0o644); err != nil {
		return 0, err
	}
	info, err := json.Marshal(struct {
		Version string
		Time    time.Time
	}{version, when.UTC()})
	if err != nil {
		return 0, err
	}
	if err := os.WriteFile(base+".info", info, 0o644); err != nil {
		return 0, err
	}

	// The go command gives a module in a subdirectory of a repository the
	// repository's LICENSE when it has none of its own, and so does this.
	extra := map[string]string{}
	if dir != "" && !slices.Contains(files, "LICENSE") {
		lic := filepath.Join(repo, "LICENSE")
		if _, err := os.Lstat(lic); err == nil {
			extra["LICENSE"] = lic
		}
	}
	n, err := writeZip(base+".zip", modPath+"@"+version+"/", src, files, extra)
	if err != nil {
		return 0, err
	}
	return n, addToList(filepath.Join(at, "list"), version)
}

// writeZip writes a module zip: each file under prefix, in a stable order.
// extra maps further names in the zip to the files that fill them.
func writeZip(name, prefix, src string, files []string, extra map[string]string) (n int, err error) {
	from := make(map[string]string, len(files)+len(extra))
	for _, f := range files {
		from[f] = filepath.Join(src, filepath.FromSlash(f))
	}
	for f, p := range extra {
		from[f] = p
	}
	names := make([]string, 0, len(from))
	for f := range from {
		names = append(names, f)
	}
	slices.Sort(names)

	zf, err := os.Create(name)
	if err != nil {
		return 0, err
	}
	defer func() {
		if cerr := zf.Close(); err == nil {
			err = cerr
		}
	}()
	zw := zip.NewWriter(zf)
	for _, f := range names {
		w, err := zw.Create(prefix + f)
		if err != nil {
			return 0, err
		}
		r, err := os.Open(from[f])
		if err != nil {
			return 0, err
		}
		_, err = io.Copy(w, r)
		r.Close()
		if err != nil {
			return 0, err
		}
	}
	return len(names), zw.Close()
}

// addToList adds version to a proxy's list of a module's versions.
func addToList(list, version string) error {
	old, err := os.ReadFile(list)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	versions := strings.Fields(string(old))
	if slices.Contains(versions, version) {
		return nil
	}
	versions = append(versions, version)
	return os.WriteFile(list, []byte(strings.Join(versions, "\n")+"\n"), 0o644)
}

// escape writes a module path or version as the proxy protocol stores it:
// each upper-case letter as '!' and its lower case.
func escape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsUpper(r) {
			b.WriteByte('!')
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
