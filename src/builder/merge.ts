/**
 * Merging layers bottom to top with OCI whiteout semantics (image-spec "Applying changesets"):
 * `.wh.NAME` removes NAME from lower layers, an opaque directory hides all lower content below it,
 * an upper entry replaces a lower one unless both are directories, whose children then merge.
 */
import { TreeNode } from './tree.js';

function copyAttributes(to: TreeNode, from: TreeNode): void {
  to.mode = from.mode;
  to.uid = from.uid;
  to.gid = from.gid;
  to.mtimeSec = from.mtimeSec;
  to.mtimeNsec = from.mtimeNsec;
  to.xattrs = from.xattrs;
}

/** Removes whiteout bookkeeping from a subtree that lands in the merged tree as a whole. */
function clean(node: TreeNode): TreeNode {
  const seen = new Set<TreeNode>();
  const stack = [node];
  while (stack.length > 0) {
    const n = stack.pop() as TreeNode;
    if (seen.has(n)) continue;
    seen.add(n);
    n.opaque = false;
    delete n.whiteouts;
    n.implicit = false;
    // One push per child: a spread of a directory's 200,000 children overflows the call stack.
    if (n.children !== undefined) for (const c of n.children.values()) stack.push(c);
  }
  return node;
}

/** Applies `upper` (a layer tree) onto `lower` (the merged tree so far), in place. */
export function applyLayer(lower: TreeNode, upper: TreeNode): void {
  const lowerChildren = lower.children as Map<string, TreeNode>;
  if (upper.opaque) lowerChildren.clear();
  for (const name of upper.whiteouts ?? []) lowerChildren.delete(name);
  if (!upper.implicit) copyAttributes(lower, upper);
  for (const [name, u] of upper.children ?? []) {
    const l = lowerChildren.get(name);
    if (u.kind === 'dir' && l?.kind === 'dir') {
      applyLayer(l, u);
    } else {
      lowerChildren.set(name, clean(u));
    }
  }
}

/** An empty tree to apply layers onto. */
export function emptyRoot(): TreeNode {
  const root = TreeNode.dir();
  root.implicit = true;
  return root;
}

/** Ends a merge: drops the whiteout bookkeeping left in the tree. */
export function finishMerge(root: TreeNode): TreeNode {
  return clean(root);
}

/** Merges layers (bottom first) into one tree; the layers are consumed. */
export function mergeLayers(layers: TreeNode[]): TreeNode {
  const root = emptyRoot();
  for (const layer of layers) applyLayer(root, layer);
  return finishMerge(root);
}
